"""`ticketlab table2 [--runs-dir runs] [--json]`: Table 2 of the source talk (accuracy before / after pruning), the
paper's figures beside ours from run directories made with the row's preset (see docs/table2.md)."""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "table2", help="Table 2 of the source talk: accuracy before/after pruning, paper vs ours",
        description="Print the talk's Table 2 (LeNet-5/MNIST and its Fashion-MNIST stand-in, Conv-6/CIFAR-10, "
                    "ResNet-50/CIFAR-10, ResGCN-28/Cora, BERT/MNLI) with our results where a run directory of the "
                    "row's preset exists under --runs-dir (seeds aggregated as in `ticketlab report`, the ticket's "
                    "gain over dense paired by seed); empty cells say the command that produces them.")
    parser.add_argument("--runs-dir", default="runs", metavar="DIR",
                        help="where `ticketlab run` put its run directories (default: runs)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ticketlab.paper.table2 import format_table2, table2, to_json

    rows = table2(args.runs_dir)
    print(to_json(rows) if args.json else format_table2(rows, args.runs_dir))
    return 0
