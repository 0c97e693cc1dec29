"""`ticketlab export RUN [--level L] [--format auto|bitmask|csr|onnx|torch-export] [--compact] [--out FILE]
[--force]`: one level of a run as a compact checkpoint, an ONNX file or a torch.export program.

A compact checkpoint prints its size against the dense checkpoint and against the floor (ticketlab.deploy.export).
ONNX and torch.export files are checked by running them against PyTorch before they are moved into place
(ticketlab.deploy.onnx_export). An existing file is replaced only with --force."""

from ticketlab.deploy.export import FORMATS

MODEL_FORMATS = {"onnx": ".onnx", "torch-export": ".pt2"}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a run level as a compact sparse checkpoint, an ONNX file or a torch.export program",
        description="Write one level's final weights as a compact safetensors checkpoint (per pruned tensor its "
                    "kept values plus a bit-packed mask or CSR indices, other tensors dense; load it with "
                    "ticketlab.deploy.export.load_compact(path, model)), or as an ONNX file or torch.export "
                    "program checked against PyTorch on the run's test data before it is written.")
    parser.add_argument("run_dir", metavar="RUN", help="a run directory (written by `ticketlab run`)")
    parser.add_argument("--level", type=int, default=None, metavar="L",
                        help="the IMP level to export (default: the last finished level)")
    parser.add_argument("--format", dest="fmt", default="auto", choices=(*FORMATS, *MODEL_FORMATS),
                        help="auto (default): the smaller of bitmask and csr, per tensor; bitmask: kept values + "
                             "1 bit per weight; csr: kept values + column indices + row pointers (tensors of 2+ "
                             "dimensions only); onnx: an ONNX graph, checked in onnxruntime; torch-export: a "
                             "torch.export program (.pt2), checked by running it")
    parser.add_argument("--compact", action="store_true",
                        help="onnx/torch-export: remove the dead neurons, channels and heads first (structured "
                             "compaction): a smaller graph with the same outputs")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="output file (default: ./<run name>-level_LL.safetensors, .onnx or .pt2)")
    parser.add_argument("--force", action="store_true",
                        help="replace FILE if it exists (default: refuse)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ticketlab.errors import TicketlabError

    if args.fmt not in MODEL_FORMATS:
        if args.compact:
            raise TicketlabError(f"--compact applies to --format onnx or torch-export, not {args.fmt}")
        from ticketlab.deploy.export import export_run  # torch only when used

        print(export_run(args.run_dir, args.level, args.out, args.fmt, overwrite=args.force).format())
        return 0
    print(export_model_file(args).format())
    return 0


def export_model_file(args):
    """The checked ONNX / torch.export route: the level's model, compacted if asked, traced on its test data."""
    from pathlib import Path

    from ticketlab.deploy.artifact import check_target
    from ticketlab.deploy.compact import compact
    from ticketlab.deploy.onnx_export import export_onnx, export_program
    from ticketlab.deploy.run_level import level_model

    if args.out:  # refused before the data set is loaded
        check_target(args.out, args.force)
    model, masks, example, level = level_model(args.run_dir, args.level)
    out = Path(args.out or f"{Path(args.run_dir).resolve().name}-level_{level:02d}{MODEL_FORMATS[args.fmt]}")
    if args.compact:
        before = sum(p.numel() for p in model.parameters())
        model = compact(model, masks, example_input=example)
        print(f"compacted: {before:,} -> {sum(p.numel() for p in model.parameters()):,} parameters")
    write = export_onnx if args.fmt == "onnx" else export_program
    return write(model, example, out, overwrite=args.force)
