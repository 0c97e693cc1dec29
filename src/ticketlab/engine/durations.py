"""Durations in a config: '500it' (iterations) or '40ep' (epochs), turned into steps once the data size is known."""

import re

from ticketlab.errors import TicketlabError

DURATION = re.compile(r"^([0-9]+)(it|ep)$")
MAX_COUNT = 2**31 - 1  # iterations or epochs; steps stay exact in int64 whatever the epoch length


def parse_duration(text: str, steps_per_epoch: int, what: str = "duration") -> int:
    """'50000it' -> 50000 steps; '40ep' -> 40 * steps_per_epoch steps."""
    match = DURATION.match(str(text).strip())
    if not match:
        text = text if len(str(text)) <= 40 else f"{str(text)[:37]}..."
        raise TicketlabError(f"{what} {text!r} must look like '500it' (iterations) or '40ep' (epochs)")
    n, unit = int(match[1][-12:]), match[2]  # (more digits than 12 are too many anyway: no int of 4,300 digits)
    if len(match[1].lstrip("0")) > 12 or n > MAX_COUNT:
        raise TicketlabError(f"{what} {text!r} is too long: at most {MAX_COUNT} iterations or epochs")
    return n if unit == "it" else n * steps_per_epoch


def is_duration(text: object) -> bool:
    return isinstance(text, str) and DURATION.match(text.strip()) is not None
