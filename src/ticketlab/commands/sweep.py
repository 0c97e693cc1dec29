"""`ticketlab sweep [FILE.yaml] [--grid KEY=V1,V2 ...]`: a grid of ordinary runs under one sweep directory, on a local
process pool or a Ray cluster; running it again skips finished runs and resumes the others (docs/sweeps.md)."""

import hashlib
import json
from pathlib import Path

from ticketlab.commands import quiet_default


def add_parser(sub):
    p = sub.add_parser(
        "sweep", help="run a grid of runs on local workers or a Ray cluster (resumes when run again)",
        description="Expand a sweep (YAML file and/or --preset/--set/--grid) into runs, each an ordinary run "
                    "directory under SWEEP_DIR/runs, with SWEEP_DIR/index.json saying what ran, where, and how. "
                    "Options given here override the file's.")
    p.add_argument("file", nargs="?", metavar="FILE.yaml",
                   help="sweep file {preset, set, grid, executor, workers, retries, pack, ray}")
    p.add_argument("--preset", help="a preset name (`ticketlab presets`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a setting for every run (repeatable)")
    p.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                   help="values to sweep, e.g. --grid train.lr=0.001,0.003 --grid seeds=0,1,2 (repeatable)")
    p.add_argument("--executor", help="local (default: a process pool on this machine) | ray")
    p.add_argument("--workers", type=int, help="jobs at a time (default: cores here, or the cluster's CPUs)")
    p.add_argument("--retries", type=int, help="re-launches of a job whose worker died (default 2)")
    p.add_argument("--ray-address", metavar="HOST:PORT", help="the Ray cluster's head (GCS) address, or auto")
    p.add_argument("--ray-cpus", type=float, metavar="N", help="CPUs per Ray task (default 1)")
    p.add_argument("--ray-gpus", type=float, metavar="N", help="GPUs per Ray task (default 0)")
    p.add_argument("--no-pack", action="store_true", help="one job per run (default: runs differing only in seeds "
                                                          "train together as batched models)")
    p.add_argument("--sweep-dir", metavar="DIR",
                   help="where the sweep goes (default: sweeps/<FILE name>, or sweeps/<preset>-<hash>)")
    p.add_argument("--quiet", action="store_true", default=quiet_default(), help="print only the final line")
    p.set_defaults(run=main)


def spec_data(args) -> dict:
    """The sweep as a mapping: the file (or an existing --sweep-dir's sweep.yaml), then the command line."""
    from ticketlab.engine.config import load_yaml
    from ticketlab.engine.yaml_files import parse_value
    from ticketlab.errors import TicketlabError
    from ticketlab.plugins import take_imports
    from ticketlab.sweep.spec import parse_grid_arg

    data = load_yaml(args.file, "sweep file") if args.file else {}
    saved = Path(args.sweep_dir or ".", "sweep.yaml")
    if args.sweep_dir and not (args.file or args.preset or args.grid) and saved.exists():
        data = load_yaml(saved, "sweep file")  # `ticketlab sweep --sweep-dir DIR` alone: resume that sweep
    if not isinstance(data, dict):
        raise TicketlabError(f"sweep file {args.file} must be a mapping of sweep keys, got {type(data).__name__}")
    data = take_imports(dict(data), f"sweep file {args.file or saved}")  # the workers import them too (jobs.py)
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise TicketlabError(f"--set {item!r} must look like section.key=value, e.g. train.lr=0.01")
        data["set"] = {**(data.get("set") or {}), key.strip(): parse_value(raw)}
    for item in args.grid:
        key, values = parse_grid_arg(item)
        data["grid"] = {**(data.get("grid") or {}), key: values}
    for key, value in (("preset", args.preset), ("executor", args.executor), ("workers", args.workers),
                       ("retries", args.retries)):
        if value is not None:
            data[key] = value
    for key, value in (("address", args.ray_address), ("num_cpus", args.ray_cpus), ("num_gpus", args.ray_gpus)):
        if value is not None:
            data["ray"] = {**(data.get("ray") or {}), key: value}
    if args.no_pack:
        data["pack"] = False
    return data


def default_dir(args, spec) -> Path:
    if args.sweep_dir:
        return Path(args.sweep_dir)
    if args.file:
        return Path("sweeps") / Path(args.file).stem
    digest = hashlib.sha256(json.dumps(spec.what_runs(), sort_keys=True).encode()).hexdigest()[:8]
    return Path("sweeps") / f"{spec.preset or 'sweep'}-{digest}"


def main(args):
    from ticketlab.sweep.driver import run_sweep
    from ticketlab.sweep.spec import parse_spec

    spec = parse_spec(spec_data(args), f"sweep file {args.file}" if args.file else "sweep")
    root = default_dir(args, spec)
    index = run_sweep(spec, root, quiet=args.quiet)
    counts = index.count()
    print(f"sweep {root}: {counts['done']} of {len(index.entries)} runs done, {counts['failed']} failed "
          f"(index: {root / 'index.json'}); results: ticketlab report {root}")
    return 1 if counts["failed"] or counts["done"] < len(index.entries) else 0
