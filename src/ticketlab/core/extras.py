"""Optional dependencies. The base install (`pip install ticketlab`) carries what masks, pruning, counting and the
training engine need; each other feature names the extra that brings its packages (pyproject.toml), and using it
without them raises a one-line TicketlabError saying what to install."""

import importlib.util

from ticketlab.errors import TicketlabError


def missing(package: str, feature: str, extra: str) -> TicketlabError:
    """The error for `feature` used without `package`, e.g. "plotting needs matplotlib: pip install
    'ticketlab[plot]'"."""
    return TicketlabError(f"{feature} needs {package}: pip install 'ticketlab[{extra}]'")


def require(module: str, feature: str, extra: str, package: str | None = None) -> None:
    """Raise `missing` unless the top-level `module` can be imported; imports nothing itself (some take ~1 s)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise missing(package or module, feature, extra)
