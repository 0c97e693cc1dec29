"""The `ticketlab` command. Each subcommand lives in `ticketlab.commands.<name>` and exposes
`add_parser(subparsers)`, which registers its arguments and sets `run=function(args) -> int | None`."""

import argparse
import importlib
import os
import sys

from .errors import TicketlabError

COMMANDS = ["models", "count", "table1", "data", "presets", "run", "report", "demo"]


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line and exit status 2, like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def quiet_default() -> bool:
    """Progress bars are off under CI."""
    return bool(os.environ.get("CI"))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ticketlab", description="Magnitude pruning and lottery tickets for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name in COMMANDS:
        importlib.import_module(f"ticketlab.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except TicketlabError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
