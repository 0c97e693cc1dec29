"""K=8 tickets trained as one batched model against the same 8 tickets trained one after another, in the same run.

--model lenet300 (default): LeNet-300-100, batch 60, Adam, on the bundled MNIST subset, every layer keeping 20%..10%.
--model conv6: Conv-6 (Frankle & Carbin 2019), batch 60, Adam 3e-4, CIFAR-shaped input, IMP levels 8-15 (its
convolutions keep 27%..8.7%). --model resnet20: ResNet-20 (Frankle et al. 2020), batch 128, SGD, global levels 4-11.
Each ticket has its own initialisation, data order and magnitude masks (ticketlab.bench.batching_workloads).
"sequential" is 8 calls of `ticketlab.engine.training.train` (the engine's per-ticket loop as `ticketlab run` runs it:
dense layers, the masked Adam kernel), "batched" one call of `ticketlab.accel.batching.train_batched` as the engine
makes it (layers keeping little train as their kept entries: Linear <= 40%, convolutions <= SPARSE_CONV_MAX_KEPT),
"batched, dense layers only" the same with `sparse=False` (what batching alone buys); all write their stage files and
evaluate at the start and the end. Repeats alternate between them so machine noise hits all alike; medians, ranges and
the noise (coefficient of variation of the repeats) are printed, with the machine load, and the verdict only when the
noise allows one. The achieved GFLOP/s (multiply-adds of forward and backward; sparse: of the kept weights) is compared
with a large dense sgemm measured in the same run.
Targets: batched >= 3.5x the throughput of sequential (lenet300), >= 3x (conv6), >= 2x (resnet20).
Run: .venv/bin/python benchmarks/ticket_batching.py [--model conv6] [--tickets 8] [--steps N] [--repeats 5]
[--threads N] [--smoke]
"""

import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("lenet300", "conv6", "resnet20"), default="lenet300")
    parser.add_argument("--level", type=int, default=None, help="prune every ticket to the densities of this IMP level "
                        "(default: lenet300 20%%..10%% kept, conv6 level 10, resnet20 level 8)")
    parser.add_argument("--tickets", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="training steps per ticket (default: 300 for "
                        "lenet300, 30 for the convolutional models)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the cores)")
    parser.add_argument("--smoke", action="store_true", help="2 tickets x 2 steps, 2 repeats (a check that it runs)")
    args = parser.parse_args()
    import torch  # after parsing: --help answers without importing torch

    from ticketlab.bench import batching_times, format_batching, load_mark, load_since, sgemm_gflops
    from ticketlab.engine.heap import keep_freed_memory

    keep_freed_memory()  # as `ticketlab` runs: both sides' large tensors reuse freed memory (engine/heap.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.tickets, args.steps, args.repeats = 2, 2, 2
    steps = args.steps or (300 if args.model == "lenet300" else 30)
    before = load_mark()
    times = batching_times(args.tickets, steps, args.repeats, progress=not args.smoke, model=args.model,
                           level=args.level)
    peak = sgemm_gflops(256 if args.smoke else 2048)
    load = load_since(before)
    print(format_batching(times, args.tickets, steps, peak, busy=load.busy, model=args.model, level=args.level))
    print("all runs (wall s): " + ", ".join(f"{name} {[round(w, 2) for w, _ in runs]}" for name, runs in times.items()))
    print(load)


if __name__ == "__main__":
    main()
