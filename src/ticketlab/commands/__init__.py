"""The subcommands of `ticketlab`, one module each (see cli.py)."""

import os


def quiet_default() -> bool:
    """Progress bars are off under CI."""
    return bool(os.environ.get("CI"))
