"""`ticketlab run`: one IMP run (or one per seed) from a preset, a YAML file and `--set` overrides."""

import argparse
import json
import textwrap

from ticketlab.commands import quiet_default
from ticketlab.engine.config import Config, help_text, load_config_file
from ticketlab.engine.threads import threads_override


def add_parser(sub):
    p = sub.add_parser("run", help="run IMP with rewinding and baselines (resumes when run again)",
                       epilog=settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train data-parallel on N processes (DDP: gloo on CPU, nccl on CUDA); data.batch_size is the "
                        "global batch, split over them (docs/distributed.md)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write every metric row as TensorBoard scalars, one TensorBoard run per stage, "
                        "DIR/<run>/<stage> (extra: tensorboard)")
    p.set_defaults(run=main)


def settings_epilog() -> str:
    """Every setting `--set` takes, with its default and help."""
    defaults = Config().to_dict()
    lines = ["settings (--set SECTION.KEY=VALUE):"]
    for section, keys in help_text().items():
        for key, text in keys.items():
            lines.append(f"  {section}.{key} (default: {json.dumps(defaults[section][key])})")  # YAML, as --set reads
            lines += textwrap.wrap(text, 100, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def add_config_arguments(p):
    p.add_argument("preset", nargs="?", help="a preset name (`ticketlab presets`)")
    p.add_argument("--config", metavar="FILE", help="YAML file with {section: {key: value}} settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one setting, e.g. --set train.lr=0.01 (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N",
                   help="run once per seed (sets the init, data and prune seeds to N)")
    p.add_argument("--runs-dir", default="runs", help="where run directories go (default: runs)")
    add_batch_argument(p)
    add_threads_argument(p)
    p.add_argument("--no-accel", action="store_true",
                   help="train on the pure-torch path: no C++ kernels, no compact optimizer, no batched tickets")
    p.add_argument("--quiet", action="store_true", default=quiet_default(), help="no progress bars")


def add_batch_argument(p):
    p.add_argument("--batch-tickets", type=int, metavar="K",
                   help="train up to K ready stages (seeds, baselines) of one architecture as one batched model, "
                        "whose layers keeping little (Linear <= 40%%, convolutions <= 30%%) train as their kept "
                        "weights only, where batching pays; 1 = one at a time (default: train.batch_tickets, 8)")


def add_threads_argument(p):
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads torch trains with (torch.set_num_threads; default: train.threads, 0 = torch's "
                        "default, one per core); on a machine busy with other work 1 is often faster")


def batch_overrides(args) -> list[str]:
    """`--batch-tickets K`; `--no-accel` trains one stage at a time, and says so in the config (batching is part of a
    run's identity: batched results differ from separate runs by rounding)."""
    if getattr(args, "no_accel", False):
        if args.batch_tickets not in (None, 1):
            from ticketlab.errors import TicketlabError

            raise TicketlabError(f"--no-accel trains one stage at a time; drop --batch-tickets {args.batch_tickets}")
        return ["train.batch_tickets=1"]
    return [] if args.batch_tickets is None else [f"train.batch_tickets={args.batch_tickets}"]


def configs(args):
    """One validated Config per requested seed."""
    from ticketlab.engine.presets import build_config
    from ticketlab.plugins import take_imports

    # `imports:` is no setting: its modules register their entries before the config names them
    file_data = take_imports(load_config_file(args.config), args.config) if args.config else None
    overrides = [*args.overrides, *batch_overrides(args), *threads_override(args.threads)]
    base = build_config(args.preset, file_data, overrides)
    if not args.seeds:
        return [base]
    return [build_config(args.preset, file_data, [*overrides, *seed_overrides(s)]) for s in args.seeds]


def seed_overrides(seed: int) -> list[str]:
    return [f"seeds.init={seed}", f"seeds.data={seed}", f"seeds.prune={seed}"]


def main(args):
    """One process, or `--nproc N` data-parallel ranks (relaunched under torchrun's launcher), or one rank of them."""
    import os

    from ticketlab.engine import distributed
    from ticketlab.engine.training import resolve_device
    from ticketlab.errors import TicketlabError

    if args.nproc is None and not distributed.launched():
        return run_all(args)
    cfgs = configs(args)
    nproc = int(os.environ["WORLD_SIZE"]) if distributed.launched() else args.nproc
    if args.nproc is not None and args.nproc != nproc:
        raise TicketlabError(f"--nproc {args.nproc} under torchrun with {nproc} processes; drop --nproc")
    device = resolve_device(cfgs[0].train.device)
    distributed.check_nproc(nproc, cfgs[0].data.batch_size, device)
    if distributed.launched():
        return distributed.worker(device, lambda: run_all(args))
    if nproc == 1:
        return run_all(args)
    distributed.launch(worker_argv(args), nproc)


def worker_argv(args) -> list[str]:
    """The command line of each rank: this one without --nproc, with the modules this process imported."""
    from ticketlab.plugins import imported

    argv = [x for module in imported() for x in ("--import", module)]
    argv += ["run", *([args.preset] if args.preset else []), *(["--config", args.config] if args.config else [])]
    argv += [x for item in args.overrides for x in ("--set", item)]
    argv += ["--seeds", *map(str, args.seeds)] if args.seeds else []
    argv += ["--runs-dir", args.runs_dir]
    argv += [] if args.batch_tickets is None else ["--batch-tickets", str(args.batch_tickets)]
    argv += [] if args.threads is None else ["--threads", str(args.threads)]
    argv += ["--no-accel"] if args.no_accel else []
    argv += ["--tensorboard", args.tensorboard] if args.tensorboard else []
    return argv + (["--quiet"] if args.quiet else [])


def run_all(args):
    import os

    from ticketlab.accel import select
    from ticketlab.engine.lottery import Lottery
    from ticketlab.engine.stages import run_lotteries
    from ticketlab.engine.store import run_locks
    from ticketlab.engine.threads import apply_threads

    accelerator = select(enabled=not args.no_accel)
    cfgs = configs(args)
    apply_threads(cfgs[0].train.threads)  # one process, one count: every seed gets the same overrides
    lotteries = [Lottery.open(cfg, args.runs_dir, args.preset, progress=not args.quiet, accelerator=accelerator)
                 for cfg in cfgs]
    # One writer per run directory (a second `ticketlab run` or a sweep is refused, naming the holder); under
    # torchrun only rank 0 takes the lock, the other ranks belong to the same run.
    main_rank = int(os.environ.get("RANK", "0")) == 0
    roots = [lottery.store.root for lottery in lotteries] if main_rank else []
    with run_locks(roots), metric_sink(args.tensorboard if main_rank else None):
        for store in run_lotteries(lotteries):  # seeds run level by level, batched where they share an architecture
            if main_rank:
                print(f"run finished: {store.root}")
    if main_rank:
        print_results(roots)


def metric_sink(tensorboard: str | None):
    """Where metric rows go besides metrics.jsonl: TensorBoard with `--tensorboard DIR`, else nowhere."""
    import contextlib

    if tensorboard is None:
        return contextlib.nullcontext()
    from ticketlab.engine.metric_sinks import sending_to
    from ticketlab.integrations.tensorboard import TensorBoardRuns

    return sending_to(TensorBoardRuns(tensorboard))


def print_results(roots) -> None:
    """The summary `ticketlab demo` and `ticketlab report` print: dense vs best ticket vs the sparsest level, with
    the baselines at their levels; seeds of one setting as mean ± std."""
    from ticketlab.report import load_runs, summary_table

    print()
    print(summary_table(load_runs(roots)))
    print(f"\nreport with figures: ticketlab report {' '.join(map(str, roots))}")
