"""`ticketlab report RUN... [--out DIR]`: tables and figures from run directories (see docs/report.md).

Prints the Table-2-style summary (dense vs best ticket vs baselines at its density) and the paths written.
"""

from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="tables and figures from run directories",
        description="Read run directories (or directories holding them), aggregate runs that differ only in their "
                    "seeds (mean ± std), print a summary and write report.md, report.html and PNG figures.")
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="a run directory, or a directory holding run directories (one or two levels down)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write the report (default: <first RUN>/report)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ticketlab.report import load_runs, summary_table, write_report  # torch and matplotlib only when used

    runs = load_runs(args.runs)
    out = Path(args.out) if args.out else Path(args.runs[0]) / "report"
    md, page = write_report(runs, out)  # files first: a closed pipe (`| head`) must not cost the report
    print(summary_table(runs))
    print(f"\nwrote {md}\nwrote {page}")
    return 0
