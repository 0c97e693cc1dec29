"""K=8 tickets trained as one batched model against the same 8 tickets trained one after another, in the same run.

LeNet-300-100, batch 60, Adam (the lenet300-mnist-mini recipe) on the bundled MNIST subset. The 8 tickets have their
own initialisation, data order and masks (kept 20%, 16%, ... of the weights, layer-wise magnitude). "sequential" is
8 calls of `ticketlab.engine.training.train` (the engine's per-ticket loop), "batched" one call of
`ticketlab.accel.batching.train_batched` as the engine makes it (Linear layers keeping <= 40% train sparse, as their
kept entries), "batched, dense matmuls only" the same with `sparse=False` (what batching alone buys); all write their
stage files and evaluate at the start and the end. Repeats alternate between them so machine noise hits all alike;
medians, ranges and the noise (coefficient of variation of the repeats) are printed, with the machine load, and the
verdict only when the noise allows one (`ticketlab bench --only batching` prints the same table). The achieved
GFLOP/s (matmul FLOPs of forward and backward, no elementwise work; sparse: of the kept weights) is compared with a
large dense sgemm measured in the same run.
Target: batched >= 3.5x the throughput of sequential.
Run: .venv/bin/python benchmarks/ticket_batching.py [--tickets 8] [--steps 300] [--repeats 5] [--threads N] [--smoke]
"""

import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the cores)")
    parser.add_argument("--smoke", action="store_true", help="2 tickets x 5 steps, 2 repeats (a check that it runs)")
    args = parser.parse_args()
    import torch  # after parsing: --help answers without importing torch

    from ticketlab.bench import batching_times, format_batching, load_since, loadavg, sgemm_gflops

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.tickets, args.steps, args.repeats = 2, 5, 2
    before = loadavg()
    times = batching_times(args.tickets, args.steps, args.repeats, progress=not args.smoke)
    peak = sgemm_gflops(256 if args.smoke else 2048)
    load = load_since(before)
    print(format_batching(times, args.tickets, args.steps, peak, busy=load.busy))
    print("all runs (wall s): " + ", ".join(f"{name} {[round(w, 2) for w, _ in runs]}" for name, runs in times.items()))
    print(load)


if __name__ == "__main__":
    main()
