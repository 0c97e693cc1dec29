"""K=8 tickets trained as one batched model against the same 8 tickets trained one after another, in the same run.

LeNet-300-100, batch 60, Adam (the lenet300-mnist-mini recipe) on the bundled MNIST subset. The 8 tickets have their
own initialisation, data order and masks (kept 20%, 16%, ... of the weights, layer-wise magnitude). "sequential" is
8 calls of `ticketlab.training.train` (the engine's per-ticket loop), "batched" one call of
`ticketlab.batching.train_batched`; both write their stage files and evaluate at the start and the end. Repeats
alternate between the two so machine noise hits both alike; medians are printed (`ticketlab bench --only batching`
prints the same table). The achieved GFLOP/s of batched training (matmul FLOPs of forward and backward, no elementwise
work) is compared with a large dense sgemm measured in the same run.
Target (issue 6): batched >= 3.5x the throughput of sequential.
Run: .venv/bin/python benchmarks/ticket_batching.py [--tickets 8] [--steps 300] [--repeats 5] [--threads N]
"""

import argparse
import statistics
import time

import torch

from ticketlab.commands.bench import BATCH, batching_times, format_batching

LAYERS = ((784, 300), (300, 100), (100, 10))  # LeNet-300-100


def train_flops_per_step(batch: int = BATCH) -> int:
    """Matmul FLOPs of one training step: forward, weight gradients, and input gradients past the first layer."""
    macs = sum(i * o for i, o in LAYERS)
    return 2 * batch * (2 * macs + sum(i * o for i, o in LAYERS[1:]))


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` throughput of one n x n x n fp32 matmul: this machine's dense GEMM ceiling."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        best = min(best, (time.perf_counter() - start) / 3)
    return 2 * n**3 / best / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    times = batching_times(args.tickets, args.steps, args.repeats, progress=True)
    print(format_batching(times, args.tickets, args.steps))
    peak = sgemm_gflops()
    flops = train_flops_per_step() * args.tickets * args.steps
    seq, bat = (statistics.median(w for w, _ in times[n]) for n in ("sequential", "batched"))
    print(f"dense sgemm 2048^3: {peak:.1f} GFLOP/s; batched training {flops / bat / 1e9:.1f} GFLOP/s = "
          f"{100 * flops / bat / 1e9 / peak:.0f}% of it (sequential: {flops / seq / 1e9:.1f} GFLOP/s = "
          f"{100 * flops / seq / 1e9 / peak:.0f}%)")
    print(f"all runs (wall s): sequential {[round(w, 2) for w, _ in times['sequential']]}, "
          f"batched {[round(w, 2) for w, _ in times['batched']]}")


if __name__ == "__main__":
    main()
