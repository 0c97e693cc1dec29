"""Durations in a config: '500it' (iterations) or '40ep' (epochs), turned into steps once the data size is known."""

import re

from ticketlab.errors import TicketlabError

DURATION = re.compile(r"^(\d+)(it|ep)$")


def parse_duration(text: str, steps_per_epoch: int, what: str = "duration") -> int:
    """'50000it' -> 50000 steps; '40ep' -> 40 * steps_per_epoch steps."""
    match = DURATION.match(str(text).strip())
    if not match:
        raise TicketlabError(f"{what} {text!r} must look like '500it' (iterations) or '40ep' (epochs)")
    n, unit = int(match[1]), match[2]
    return n if unit == "it" else n * steps_per_epoch


def is_duration(text: object) -> bool:
    return isinstance(text, str) and DURATION.match(text.strip()) is not None
