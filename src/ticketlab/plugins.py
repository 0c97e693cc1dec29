"""Plugins: user code that registers models, data sets, criteria and baselines before the CLI reads a config.

Three ways in, all loaded before a command validates anything (docs/plugins.md):
  --import my_package.my_module   on the command line, before or after the subcommand (repeatable)
  imports: [my_package.my_module] in a YAML config or sweep file (`take_imports`)
  entry points of group "ticketlab.plugins" in installed packages: a module, or a callable called with no arguments
A module is found on sys.path, then in the current directory. Any failure (missing module, an exception while it
imports or registers) is a TicketlabError naming the module and the cause, so the CLI says it in one line.

This module imports nothing of ticketlab but the error type, so every process that starts work (the CLI, a sweep
worker) can load the same plugins."""

import importlib
import importlib.metadata
import os
import re
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from ticketlab.errors import TicketlabError

GROUP = "ticketlab.plugins"
DISABLE_ENV = "TICKETLAB_DISABLE_PLUGIN_AUTOLOAD"  # set (non-empty): installed entry points are not loaded
MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

_imported: list[str] = []  # modules imported by name, in order: what a sweep worker must import too
_packages: dict[str, str] = {}  # top-level package of an entry point -> "package DIST VERSION"
_entry_points_done: set[tuple[str, str]] = set()  # (name, value): a callable registers once per process


def load_plugins(modules: Iterable[str] = (), where: str = "--import") -> None:
    """The installed entry points (unless $TICKETLAB_DISABLE_PLUGIN_AUTOLOAD), then `modules`."""
    if not os.environ.get(DISABLE_ENV):
        load_entry_points()
    import_modules(modules, where)


def import_modules(names: Iterable[str], where: str = "--import") -> None:
    """Import each module (its decorators register its entries); `where` says in the error where the name came from."""
    names = list(names)
    if not names:
        return
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # the console script's sys.path[0] is its bin directory
        sys.path.append(cwd)
    importlib.invalidate_caches()  # a module written since the last import (tests, notebooks) is found
    for name in names:
        import_one(name, where)


def import_one(name: str, where: str) -> None:
    if not isinstance(name, str) or not MODULE_NAME.match(name):
        raise TicketlabError(not_a_module(name, where))
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise TicketlabError(f"{where} {name!r}: no module named {e.name!r} on sys.path or in the current "
                                 f"directory; set PYTHONPATH to the directory holding it") from None
        raise TicketlabError(f"{where} {name!r} failed: {cause(e)}") from None
    except Exception as e:  # whatever the user's module raised, as one line that names it
        raise TicketlabError(f"{where} {name!r} failed: {cause(e)}") from None
    if name not in _imported:
        _imported.append(name)


def not_a_module(name, where: str) -> str:
    text = str(name)
    if text.endswith(".py"):
        path = Path(text)
        return (f"{where} {text!r} is a file, not a module name: give {path.stem!r} and run from "
                f"{str(path.parent)!r} or put that directory on PYTHONPATH")
    return f"{where} {name!r} is not a module name: give my_package.my_module"


def cause(error: BaseException) -> str:
    """'Type: message (at file:line)': where the user's code raised, on one line."""
    text = str(error) if isinstance(error, TicketlabError) else f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    if isinstance(error, SyntaxError) and error.filename:
        text += f" (at {error.filename}:{error.lineno})"
    elif frames:
        text += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return " ".join(text.split())


def load_entry_points() -> None:
    """Every entry point of group "ticketlab.plugins": a module is imported; a callable is also called."""
    for ep in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda ep: (ep.name, ep.value)):
        if (ep.name, ep.value) in _entry_points_done:
            continue
        dist = getattr(ep, "dist", None)
        package = f"package {dist.name} {dist.version}" if dist is not None else "an installed package"
        try:
            target = ep.load()
            if callable(target):
                target()
        except Exception as e:
            raise TicketlabError(f"plugin entry point '{ep.name} = {ep.value}' of {package} failed: {cause(e)}; "
                                 f"fix or uninstall it, or set {DISABLE_ENV}=1 to skip installed plugins") from None
        _entry_points_done.add((ep.name, ep.value))
        _packages[ep.module.split(".")[0]] = package


def imported() -> list[str]:
    """The modules imported by name in this process (--import, imports:), for processes that run its work."""
    return list(_imported)


def origin(module: str) -> str:
    """Where a registered entry comes from, by its module: built-in, a module, or a module of an installed package."""
    if module == "ticketlab" or module.startswith("ticketlab."):
        return "built-in"
    package = _packages.get(module.split(".")[0])
    return f"{module} ({package})" if package else module


def take_imports(data: dict, where: str) -> dict:
    """`data` (a YAML config or sweep file's mapping) without its `imports:` key, whose modules are imported now."""
    if "imports" not in data:
        return data
    names = data["imports"]
    if names is None:
        names = []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise TicketlabError(f"imports in {where} must be a list of module names, written [my_package.models] "
                             f"(or [] for none), got {names!r}")
    import_modules(names, f"imports in {where}:")
    return {k: v for k, v in data.items() if k != "imports"}
