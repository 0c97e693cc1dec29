"""`ticketlab bench [--quick] [--only SECTION] [--threads N]`: speed and size ratios on this machine.

Everything is measured in the same process and printed as ratios, with the thread count:
  inference  sparse vs dense inference time (ticketlab.deploy.sparse_inference.sparsify) at several densities,
             batch 1 and 64, for LeNet-300-100 and VGG-16's fc layers (fc6 25088x4096, fc7 4096x4096, fc8 4096x1000,
             built alone, not the whole VGG); per layer also our numba kernel against torch's CSR kernel.
  export     compact checkpoint size (ticketlab.deploy.export) vs the dense checkpoint and vs the floor.
  batching   K=8 LeNet-300-100 tickets trained as one batched model (ticketlab.accel.batching.train_batched: their
             Linear layers, keeping 10-20%, train sparse) against the same 8 trained one after another by
             ticketlab.engine.training.train, and batched with dense matmuls only (batch 60, Adam, bundled MNIST
             subset).
  training   masked training (a 20%-kept mask) against dense training of LeNet-300-100, both through `train`, and
             against the same mask attached by torch.nn.utils.prune.
Every timing is repeated with A and B interleaved and printed as a median, a range and a noise figure (the
coefficient of variation of the repeats, ticketlab.bench.noise); a target's verdict ("met" / "not met") is printed
only when the noise is smaller than the distance to the target and the machine was not busy (the load average, the
cores other work used meanwhile, the cores and the threads used are printed with every section). On a busy machine,
--threads 1 measures more steadily.
Masks are layer-wise magnitude masks of seeded random weights (the speed and size do not depend on the values).
The measurements live in ticketlab.bench; the benchmarks/ scripts call the same functions with the full settings.
"""

from ticketlab.commands import quiet_default

SECTIONS = ("inference", "export", "batching", "training")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure sparse inference, compact checkpoints, ticket batching and masked training here",
        description="Time sparse against dense inference (LeNet-300-100, VGG-16 fc layers) at 50/20/10/5/2% of "
                    "weights kept, batch 1 and 64; measure compact checkpoint sizes; time 8 tickets trained batched "
                    "(sparse kernels, and dense matmuls only) "
                    "against one after another, and masked against dense training and torch.nn.utils.prune. "
                    "Prints ratios measured in this run. --quick: 10% and 2% only, "
                    "LeNet-300-100 and fc7 only, shorter timings and fewer repeats.")
    parser.add_argument("--quick", action="store_true", help="a subset that runs in about 20 seconds")
    parser.add_argument("--quiet", action="store_true", default=quiet_default(), help="no progress bar")
    parser.add_argument("--only", choices=SECTIONS, default=None, help="run one section only")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads (default, or 0: torch's default, the number of cores); on a busy machine 1 "
                             "is steadier")
    parser.add_argument("--smoke", action="store_true", help="the smallest sizes (a check that it runs, no figures "
                                                             "to quote)")
    parser.set_defaults(run=run)


def run(args) -> int:
    import os

    from ticketlab.bench import batching_report, export_report, inference_report, loadavg, training_report
    from ticketlab.engine.threads import apply_threads, threads_override

    threads_override(args.threads)  # a negative count: the one-line user error naming --threads
    threads = apply_threads(args.threads or 0)
    print(f"ticketlab bench: {threads} threads, {os.cpu_count()} cores, load average {loadavg():.2f} at the start"
          + ("; the machine is busy: expect no verdicts (--threads 1 is steadier)"
             if loadavg() > (os.cpu_count() or 1) - threads + 0.5 else ""), flush=True)
    sizes = {"quick": args.quick, "smoke": args.smoke}
    if args.only in (None, "inference"):
        print(inference_report(progress=not args.quiet, **sizes), flush=True)
    if args.only in (None, "export"):
        print(export_report(**sizes), flush=True)
    if args.only in (None, "batching"):
        print(batching_report(progress=not args.quiet, **sizes), flush=True)
    if args.only in (None, "training"):
        print(training_report(**sizes), flush=True)
    return 0
