"""The one exception type for errors a user can cause.

The CLI prints its message on one line and exits with status 2; anything else is a programming error
and keeps its traceback.
"""

import difflib


class TicketlabError(ValueError):
    """A bad value, unknown name, missing file or corrupt file, with a one-line message."""


def closest(name: str, allowed) -> str:
    """' (did you mean X?)' when a close match exists, else ''."""
    match = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown(kind: str, name: str, allowed) -> TicketlabError:
    """The standard 'unknown X' error: names the value, suggests the closest, lists what is allowed."""
    allowed = sorted(allowed)
    return TicketlabError(f"unknown {kind} {name!r}{closest(name, allowed)}; allowed: {', '.join(allowed)}")
