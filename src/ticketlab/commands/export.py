"""`ticketlab export RUN [--level L] [--format auto|bitmask|csr] [--out FILE]`: a compact checkpoint of one level.

Prints the file's size against the dense checkpoint and against the floor (see ticketlab.deploy.export)."""

from ticketlab.deploy.export import FORMATS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a compact sparse checkpoint of a run level (kept values + bitmask or CSR)",
        description="Write one level's final weights as a compact safetensors checkpoint: per pruned tensor its "
                    "kept values plus a bit-packed mask or CSR indices, other tensors dense. Load it with "
                    "ticketlab.deploy.export.load_compact(path, model).")
    parser.add_argument("run_dir", metavar="RUN", help="a run directory (written by `ticketlab run`)")
    parser.add_argument("--level", type=int, default=None, metavar="L",
                        help="the IMP level to export (default: the last finished level)")
    parser.add_argument("--format", dest="fmt", default="auto", choices=FORMATS,
                        help="auto (default): the smaller of bitmask and csr, per tensor; bitmask: kept values + "
                             "1 bit per weight; csr: kept values + column indices + row pointers (tensors of 2+ "
                             "dimensions only)")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="output file (default: ./<run name>-level_LL.safetensors)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ticketlab.deploy.export import export_run  # torch only when used

    print(export_run(args.run_dir, args.level, args.out, args.fmt).format())
    return 0
