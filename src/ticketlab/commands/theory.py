"""`ticketlab theory list | run NAME | report DIR...`: the talk's theoretical claims as experiments on synthetic
data (see docs/theory.md). `run` writes CSV/JSON/PNG into a run directory and prints the fitted exponents and
boundaries with 95% confidence intervals; `report` prints them again from run directories without training."""

from pathlib import Path

from ticketlab.errors import TicketlabError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "theory", help="teacher-student and feature-mixture experiments testing the talk's theory",
        description="Seeded, batched experiments on synthetic data with fitted scaling laws (docs/theory.md).")
    sub = parser.add_subparsers(dest="theory_command", required=True, parser_class=type(parser))
    lister = sub.add_parser("list", help="the experiments and the claim each tests")
    lister.set_defaults(run=run_list)
    runner = sub.add_parser("run", help="run one experiment into a run directory")
    runner.add_argument("name", metavar="NAME", help="an experiment (see `ticketlab theory list`)")
    runner.add_argument("--quick", action="store_true", help="tiny size that runs in seconds (for tests)")
    runner.add_argument("--out", metavar="DIR", default=None,
                        help="run directory (default: theory-runs/NAME-seedS[-quick])")
    runner.add_argument("--seed", type=int, default=0, metavar="S", help="base seed of every random stream (0)")
    runner.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set trials=5 --set Ns=100,200 (see `theory list -v`)")
    runner.add_argument("--max-memory", type=float, default=2.0, metavar="GIB",
                        help="refuse batched computations estimated to need more than this many GiB (2)")
    runner.add_argument("--threads", type=int, default=1, metavar="T",
                        help="torch intra-op threads (default 1: the batched tensors are small, and on a shared "
                             "machine extra threads spin-wait and can make each step 10-50x slower)")
    runner.add_argument("--quiet", action="store_true", help="no progress lines")
    runner.set_defaults(run=run_one)
    lister.add_argument("-v", "--verbose", action="store_true", help="also show every setting and its default")
    reporter = sub.add_parser("report", help="print the fits and verdicts of run directories (reads files only)")
    reporter.add_argument("dirs", nargs="+", metavar="DIR", help="a run directory or a directory holding them")
    reporter.add_argument("--table", action="store_true",
                          help="print the claim | experiment | figure | verdict table (Markdown) instead")
    reporter.add_argument("--write-doc", metavar="FILE", default=None,
                          help="write that table into FILE between its theory-table markers (e.g. docs/theory.md)")
    reporter.set_defaults(run=run_report)


def run_list(args) -> int:
    from ticketlab.paper.theory import EXPERIMENTS, settings_for
    from ticketlab.paper.theory.config import describe

    for name in EXPERIMENTS.names():
        print(f"{name:16s} {EXPERIMENTS.get(name).claim}")
        if args.verbose:
            for key, value in describe(settings_for(name)).items():
                print(f"{'':18s}{key} = {value}")
    return 0


def run_one(args) -> int:
    from ticketlab.paper.theory import EXPERIMENTS, run_experiment

    EXPERIMENTS.get(args.name)  # unknown names fail first, with a suggestion
    if not args.max_memory > 0:
        raise TicketlabError(f"--max-memory must be a positive number of GiB, got {args.max_memory}")
    if args.threads < 1:
        raise TicketlabError(f"--threads must be a positive integer, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out or f"theory-runs/{args.name}-seed{args.seed}{'-quick' if args.quick else ''}")
    progress = (lambda *a: None) if args.quiet else (lambda line: print(line, flush=True))
    results = run_experiment(args.name, out, quick=args.quick, seed=args.seed, overrides=args.overrides,
                             max_bytes=int(args.max_memory * 1024**3), progress=progress)
    print(format_results(results, out))
    return 0


def format_results(results: dict, out) -> str:
    lines = [f"{results['experiment']} ({results['size']} size, seed {results['seed']}, "
             f"{results['elapsed_seconds']:.1f} s): {results['claim']}"]
    lines += [f"  {line}" for line in results.get("lines", []) if line]
    for v in results.get("verdicts", []):
        variant = f" [{v['variant']}]" if v.get("variant") else ""
        lines.append(f"  VERDICT{variant} {v['verdict']}: {v['claim']}")
    excluded = results.get("nonfinite_trials", 0)
    lines.append(f"  non-finite trials excluded from every average and fit: {excluded}")
    lines.append(f"  wrote {out}/: {', '.join(results['files'])}")
    return "\n".join(lines)


def run_report(args) -> int:
    from ticketlab.core.files import read_json

    found = []
    for d in map(Path, args.dirs):
        if not d.is_dir():
            raise TicketlabError(f"not a directory: {d}")
        found += [d / "results.json"] if (d / "results.json").exists() else sorted(d.glob("*/results.json"))
    if not found:
        raise TicketlabError(f"no theory run directory (with results.json) in {', '.join(args.dirs)}")
    loaded = []
    for path in found:
        results = read_json(path)
        if "experiment" not in results or "files" not in results:
            raise TicketlabError(f"{path} is not a theory results file")
        loaded.append((path, results))
    if not (args.table or args.write_doc):
        for path, results in loaded:
            print(format_results(results, path.parent))
        return 0
    from ticketlab.paper.theory.table import ORDER, verdict_table, write_between_markers

    order = {name: i for i, name in enumerate(ORDER)}
    loaded.sort(key=lambda item: (order.get(item[1]["experiment"], len(order)), str(item[0])))
    doc = Path(args.write_doc) if args.write_doc else None
    if doc is not None and not doc.is_file():
        raise TicketlabError(f"--write-doc: no such file: {doc}")
    table = verdict_table(loaded, relative_to=doc.parent if doc else None)
    if doc is None:
        print(table)
    else:
        write_between_markers(doc, table)
        print(f"wrote the verdict table ({table.count(chr(10)) - 1} rows) into {doc}")
    return 0
