"""The `ticketlab` command. Each subcommand lives in `ticketlab.commands.<name>` and exposes
`add_parser(subparsers)`, which registers its arguments and sets `run=function(args) -> int | None`."""

import argparse
import importlib
import sys

from ticketlab.errors import TicketlabError

COMMANDS = [
    "models", "count", "table1", "table2", "data", "presets", "run", "report", "demo", "theory", "export", "bench",
    "sweep",
]


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line and exit status 2, like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(names: list[str] = COMMANDS) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ticketlab", description="Magnitude pruning and lottery tickets for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name in names:
        importlib.import_module(f"ticketlab.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Import only the command being run (fast start); all of them for the top-level help or a bad name.
    first = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser([first] if first in COMMANDS else COMMANDS).parse_args(argv)
    try:
        return args.run(args) or 0
    except TicketlabError as e:
        print(f"ticketlab: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ticketlab report runs | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except OSError as e:  # the last boundary: a disk or permission error outside the store's own (core/files.py)
        where = f" {e.filename}" if e.filename else ""
        print(f"ticketlab: error: {e.strerror or e}{where}; free space or fix permissions, then run it again",
              file=sys.stderr)
        return 2


def one_line(error: Exception) -> str:
    """The message on one line, whatever a value quoted in it held (a `--set` value with a newline)."""
    return " ".join(str(error).split("\n"))


if __name__ == "__main__":
    sys.exit(main())
