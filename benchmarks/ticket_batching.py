"""K=8 tickets trained as one batched model against the same 8 tickets trained one after another, in the same run.

LeNet-300-100, batch 60, Adam (the lenet300-mnist-mini recipe) on the bundled MNIST subset. The 8 tickets have their
own initialisation, data order and masks (kept 20%, 16%, ... of the weights, layer-wise magnitude). "sequential" is
8 calls of `ticketlab.training.train`, "batched" one call of `ticketlab.batching.train_batched`; both write their stage
files, evaluate at the end only, and include everything a stage does. Repeats alternate between the two so machine
noise hits both alike; the best repeat of each is printed. The achieved GFLOP/s of batched training (matmul FLOPs
of forward and backward, no elementwise work) is compared with a large dense sgemm measured in the same run.
Target (issue 6): batched >= 3.5x the throughput of sequential.
Run: nice -n 10 .venv/bin/python benchmarks/ticket_batching.py [--tickets 8] [--steps 300] [--repeats 5] [--threads N]
"""

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from ticketlab.batching import Ticket, train_batched
from ticketlab.config import TrainConfig
from ticketlab.data import load_dataset
from ticketlab.masks import Masks, describe_density
from ticketlab.models import build_model
from ticketlab.pruning import PruneSpec, prune
from ticketlab.training import make_plan, train

BATCH = 60
LAYERS = ((784, 300), (300, 100), (100, 10))  # LeNet-300-100


def train_flops_per_step(batch: int = BATCH) -> int:
    """Matmul FLOPs of one training step: forward, weight gradients, and input gradients past the first layer."""
    macs = sum(i * o for i, o in LAYERS)
    return 2 * batch * (2 * macs + sum(i * o for i, o in LAYERS[1:]))


def make_tickets(k: int, splits, cfg: TrainConfig, root: Path) -> list[Ticket]:
    tickets = []
    for i in range(k):
        model = build_model("lenet300", num_classes=10, seed=i)
        masks = prune(model, Masks.ones(model), PruneSpec(rate=1 - 0.2 * 0.8 ** (i % 4)))
        plan = make_plan(cfg, len(splits.train), BATCH, data_seed=i)
        tickets.append(Ticket(model, masks, splits, plan, root / f"ticket{i}"))
    return tickets


def sequential(tickets: list[Ticket], cfg: TrainConfig) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process)."""
    start, cpu = time.perf_counter(), time.process_time()
    for t in tickets:
        train(t.model, t.masks, t.splits, cfg, copy.copy(t.plan), t.stage)
    return time.perf_counter() - start, time.process_time() - cpu


def batched(tickets: list[Ticket], cfg: TrainConfig) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    train_batched(tickets, cfg)
    return time.perf_counter() - start, time.process_time() - cpu


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
    splits = load_dataset("mnist-mini")
    cfg = TrainConfig(steps=f"{args.steps}it", optimizer="adam", lr=1.2e-3, eval_every=f"{args.steps}it",
                      checkpoint_every=f"{10 * args.steps}it")
    times = {"sequential": [], "batched": []}
    gemm = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = make_tickets(2, splits, cfg, Path(tmp) / "warm")
        batched(warm, cfg)
        sequential(make_tickets(1, splits, cfg, Path(tmp) / "warm1"), cfg)
        for r in range(args.repeats):
            for name, fn in (("sequential", sequential), ("batched", batched)):
                tickets = make_tickets(args.tickets, splits, cfg, Path(tmp) / f"{name}{r}")
                times[name].append(fn(tickets, cfg))
            gemm.append(sgemm_gflops())
    k, steps = args.tickets, args.steps
    seq, bat, peak = min(w for w, _ in times["sequential"]), min(w for w, _ in times["batched"]), max(gemm)
    flops = train_flops_per_step() * k * steps
    densities = sorted({round(t.masks.density(), 3) for t in tickets})
    print(f"LeNet-300-100, batch {BATCH}, Adam, {k} tickets x {steps} steps, {args.repeats} repeats alternating, "
          f"{torch.get_num_threads()} threads (best of each); masks {describe_density(densities[0])} .. "
          f"{describe_density(densities[-1])}")
    print(f"sequential ({k} x train)  : {seq:7.2f} s  {k * steps / seq:8.0f} ticket-steps/s")
    print(f"batched (train_batched)   : {bat:7.2f} s  {k * steps / bat:8.0f} ticket-steps/s")
    print(f"batched / sequential      : {seq / bat:7.2f}x   (target >= 3.5x)")
    print(f"dense sgemm 2048^3        : {peak:7.1f} GFLOP/s (best of {len(gemm)})")
    print(f"batched training          : {flops / bat / 1e9:7.1f} GFLOP/s = {100 * flops / bat / 1e9 / peak:.0f}% of "
          f"sgemm   (sequential: {flops / seq / 1e9:.1f} GFLOP/s = {100 * flops / seq / 1e9 / peak:.0f}%)")
    if torch.get_num_threads() == 1:  # one thread: CPU time is what the work costs, whatever else the machine runs
        seq_cpu, bat_cpu = min(c for _, c in times["sequential"]), min(c for _, c in times["batched"])
        print(f"per CPU second            : sequential {k * steps / seq_cpu:.0f}, batched {k * steps / bat_cpu:.0f} "
              f"ticket-steps/s, {seq_cpu / bat_cpu:.2f}x")
    print(f"all runs (wall s): sequential {[round(w, 2) for w, _ in times['sequential']]}, "
          f"batched {[round(w, 2) for w, _ in times['batched']]}")


if __name__ == "__main__":
    main()
