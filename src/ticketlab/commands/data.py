"""`ticketlab data list | info NAME | fetch NAME`: what datasets exist, their splits, and downloads."""

import json

from ticketlab import plugins
from ticketlab.commands import quiet_default
from ticketlab.data import DATASETS, REMOTES, data_dir, fetch, load_dataset
from ticketlab.errors import unknown


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="list, inspect and download datasets",
                                   description="List datasets, show their splits, or download the official files.")
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{list,info,fetch}")

    listing = sub.add_parser("list", help="registered datasets and where their data comes from")
    listing.set_defaults(run=run_list)

    info = sub.add_parser("info", help="load a dataset and print its split sizes, shape and classes")
    info.add_argument("name", metavar="NAME")
    info.add_argument("--root", help="directory with the dataset files (default: $TICKETLAB_DATA or "
                                     "~/.cache/ticketlab/datasets)")
    info.add_argument("--val-size", type=int, help="training samples held out for validation (default: per dataset)")
    info.add_argument("--seed", type=int, default=0, help="seed of the validation split (default: 0)")
    info.add_argument("--tokenizer", metavar="DIR", help="text datasets (mnli): the model's tokenizer directory")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(run=run_info)

    get = sub.add_parser("fetch", help="download the official files and verify their checksums",
                         description="Download a dataset's official files into --dir, resuming partial downloads "
                                     "and verifying the published checksums.")
    get.add_argument("name", metavar="NAME", help=f"one of: {', '.join(REMOTES)}")
    get.add_argument("--dir", dest="directory", default=None,
                     help="where to put the files (default: $TICKETLAB_DATA or ~/.cache/ticketlab/datasets)")
    get.add_argument("--mirror", help="base URL serving the same file names (default: $TICKETLAB_MIRROR or the "
                                      "official source)")
    get.add_argument("--quiet", action="store_true", default=quiet_default(),
                     help="no progress bar (default when $CI is set)")
    get.set_defaults(run=run_fetch)


def origin(name: str) -> str:
    if name in REMOTES:
        return "files (ticketlab data fetch)"
    module = DATASETS.get(name).__module__
    if module == "ticketlab.data.bundled":
        return "bundled"
    source = plugins.origin(module)
    return f"registered in {module}" if source == "built-in" else f"plugin {source}"


def summary(name: str) -> str:
    doc = DATASETS.get(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def run_list(args) -> int:
    rows = [(name, origin(name), summary(name)) for name in DATASETS.names()]
    widths = [max(len(row[i]) for row in [("name", "source", ""), *rows]) for i in range(2)]
    print(f"{'name'.ljust(widths[0])}  {'source'.ljust(widths[1])}  description")
    for name, source, text in rows:
        print(f"{name.ljust(widths[0])}  {source.ljust(widths[1])}  {text}")
    return 0


def run_info(args) -> int:
    options = {"tokenizer": args.tokenizer} if args.tokenizer else {}
    splits = load_dataset(args.name, root=args.root, val_size=args.val_size, seed=args.seed, **options)
    if args.json:
        print(json.dumps({"name": splits.name, **splits.sizes(), "input_shape": list(splits.input_shape),
                          "num_classes": splits.num_classes, "seed": args.seed}, indent=2))
    else:
        print(splits.describe())
    return 0


def run_fetch(args) -> int:
    if args.name in DATASETS and args.name not in REMOTES:
        print(f"{args.name}: {origin(args.name)}, nothing to fetch")
        return 0
    if args.name not in REMOTES:
        raise unknown("downloadable dataset", args.name, REMOTES)
    directory = args.directory or data_dir()
    folder = fetch(args.name, directory, mirror=args.mirror, quiet=args.quiet)
    print(f"{args.name}: verified files in {folder}; load with load_dataset({args.name!r}, root={str(directory)!r})")
    return 0
