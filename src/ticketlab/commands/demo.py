"""`ticketlab demo`: the lottery ticket hypothesis on this machine in about three minutes.

LeNet-300-100 on the bundled 5,000-image MNIST subset, IMP with rewinding to θ0 over 10 levels, with the
random-pruning and random-reinitialisation baselines, for 3 seeds; then a Table-2-style summary and the report."""

import time
from pathlib import Path

from ticketlab.commands import quiet_default
from ticketlab.commands.run import add_batch_argument, add_threads_argument, batch_overrides, seed_overrides

DEMO_PRESET = "lenet300-mnist-mini"
DEMO_SEEDS = (0, 1, 2)


def add_parser(sub):
    p = sub.add_parser("demo", help=f"IMP on bundled MNIST ({DEMO_PRESET}, 3 seeds) with baselines and a report")
    p.add_argument("--runs-dir", default="runs/demo", help="where the run directories go (default: runs/demo)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEMO_SEEDS), metavar="N")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--quiet", action="store_true", default=quiet_default(), help="no progress bars")
    add_batch_argument(p)
    add_threads_argument(p)
    p.set_defaults(run=main)


def main(args):
    from ticketlab.accel import select
    from ticketlab.engine.lottery import Lottery
    from ticketlab.engine.presets import build_config
    from ticketlab.engine.stages import run_lotteries
    from ticketlab.engine.threads import apply_threads, threads_override
    from ticketlab.report import load_runs, summary_table, write_report

    started = time.perf_counter()
    lotteries = []
    for seed in args.seeds:
        cfg = build_config(DEMO_PRESET, overrides=[*args.overrides, *batch_overrides(args),
                                                   *threads_override(args.threads), *seed_overrides(seed)])
        threads = apply_threads(cfg.train.threads)
        print(f"seed {seed}: {cfg.run_name()} ({threads} threads)", flush=True)
        lotteries.append(Lottery.open(cfg, args.runs_dir, DEMO_PRESET, progress=not args.quiet,
                                      accelerator=select()))
    roots = [store.root for store in run_lotteries(lotteries)]  # the seeds' stages of a level train batched
    runs = load_runs(roots)
    print()
    print(summary_table(runs))
    markdown, html = write_report(runs, Path(args.runs_dir) / "report")
    print(f"\nreport: {html}\n        {markdown}")
    print(f"demo wall time: {time.perf_counter() - started:.0f} s")
