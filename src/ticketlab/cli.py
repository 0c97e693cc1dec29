"""The `ticketlab` command. Each subcommand lives in `ticketlab.commands.<name>` and exposes
`add_parser(subparsers)`, which registers its arguments and sets `run=function(args) -> int | None`."""

import argparse
import importlib
import sys

from ticketlab.engine.heap import keep_freed_memory
from ticketlab.errors import TicketlabError
from ticketlab.plugins import load_plugins

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
    parser.add_argument("--version", action="version", version=f"ticketlab {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name in names:
        importlib.import_module(f"ticketlab.commands.{name}").add_parser(sub)
    add_import_option(parser)
    return parser


def add_import_option(parser: argparse.ArgumentParser, depth: int = 0) -> None:
    """`--import MODULE` on the top-level parser and on every subcommand (nested ones too), so it goes before or
    after the subcommand. Each depth keeps its own list: argparse copies a subcommand's namespace over its parent's."""
    parser.add_argument("--import", dest=f"imports_{depth}", action="append", metavar="MODULE",
                        default=[] if depth == 0 else argparse.SUPPRESS,
                        help="import a module of yours that registers models, data sets, criteria or baselines "
                             "(repeatable; docs/plugins.md)")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                add_import_option(child, depth + 1)


def requested_imports(args: argparse.Namespace) -> list[str]:
    """The `--import` modules in command-line order (before the subcommand, then after it)."""
    depths = sorted(int(k.split("_")[1]) for k in vars(args) if k.startswith("imports_"))
    return [m for d in depths for m in getattr(args, f"imports_{d}")]


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ticketlab")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from ticketlab import __version__

        return __version__


def command_name(argv: list[str]) -> str | None:
    """The subcommand: the first word that is neither an option nor the value of `--import`."""
    after_import = False
    for word in argv:
        if not after_import and not word.startswith("-"):
            return word
        after_import = word == "--import"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Import only the command being run (fast start); all of them for the top-level help or a bad name.
    first = command_name(argv)
    args = build_parser([first] if first in COMMANDS else COMMANDS).parse_args(argv)
    keep_freed_memory()  # the heap policy (engine/heap.py): no fresh pages for every step's large tensors
    try:
        load_plugins(requested_imports(args))  # before any command reads a model, data set or config
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
