"""The values a config accepts: each setting's type (from its annotation), finite numbers, and ranges.

Integers are bounded so that every use stays exact in int64: seeds go to `torch.Generator.manual_seed` (which takes
0 .. 2**64 - 1) after arithmetic such as `seed * 1_000_003 + step` (the data order) and `seed * 1000 + level` (random
pruning), so seeds are kept below 2**31; counts (levels, batch sizes) below 2**31 too."""

import math
from typing import Any, get_args, get_origin

from ticketlab.errors import TicketlabError

MAX_SEED = 2**31 - 1
MAX_COUNT = 2**31 - 1

# (section, key): (what is allowed, as said in the message; the test). Floats must also be finite.
FLOAT_RANGES = {
    ("train", "lr"): ("> 0", lambda x: x > 0),
    ("train", "momentum"): ("in [0, 1)", lambda x: 0 <= x < 1),
    ("train", "weight_decay"): (">= 0", lambda x: x >= 0),
    ("train", "gamma"): ("> 0", lambda x: x > 0),
    ("lottery", "max_drop"): ("in [0, 1]", lambda x: 0 <= x <= 1),
    ("prune", "min_density"): ("in [0, 1)", lambda x: 0 <= x < 1),
}
# (section, key): (lowest, highest)
INT_RANGES = {
    ("data", "batch_size"): (1, MAX_COUNT),
    ("train", "batch_tickets"): (1, MAX_COUNT),
    ("train", "threads"): (0, 4096),
    ("lottery", "levels"): (0, MAX_COUNT),
    ("seeds", "init"): (0, MAX_SEED),
    ("seeds", "data"): (0, MAX_SEED),
    ("seeds", "prune"): (0, MAX_SEED),
}
INT_WHY = {"seeds": " (seeds feed torch.Generator after arithmetic such as seed * 1_000_003 + step)"}
# settings written as durations: a bare number gets a suggestion
DURATIONS = {"train.steps", "train.warmup", "train.eval_every", "train.checkpoint_every", "train.milestones",
             "lottery.rewind"}


def shown(value: Any, limit: int = 60) -> str:
    """repr(value) on one line, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def coerce(value: Any, kind, where: str):
    """`value` checked against the annotated type `kind` (YAML 1.1 strings such as 3e-4 read as floats)."""
    origin, args = get_origin(kind), get_args(kind)
    if origin is not None and type(None) in args:  # X | None
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = get_origin(kind), get_args(kind)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is float and not isinstance(value, bool) and isinstance(value, int | float | str):
        return finite(value, where)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        if "\x00" in value:
            raise TicketlabError(f"{where} must not contain a NUL character, got {shown(value)}")
        return value
    if origin is list and isinstance(value, list):
        return [coerce(v, args[0], where) for v in value]
    if origin is dict and isinstance(value, dict):
        return {coerce(k, args[0], where): coerce(v, args[1], where) for k, v in value.items()}
    raise TicketlabError(f"{where} must be {described(kind, origin, where, value)}, got {shown(value)}")


def finite(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise TicketlabError(f"{where} must be float (a finite number), got {shown(value)}") from None
    if not math.isfinite(number):
        raise TicketlabError(f"{where} must be a finite number, got {shown(value)}")
    return number


def described(kind, origin, where: str, value: Any) -> str:
    """What `where` takes, in the words of a YAML file or `--set`."""
    if where in DURATIONS and isinstance(value, int) and not isinstance(value, bool):
        return f"a duration such as '{value}it' (iterations) or '{value}ep' (epochs)"
    if origin is list:
        return "a list, written [a, b] (or [] for none)"
    if origin is dict:
        return "a mapping, written {name: value} (or {} for none)"
    return {bool: "true or false", int: "int (an integer)", float: "float (a finite number)", str: "str (text)"}.get(
        kind, str(kind))


def check_ranges(cfg) -> None:
    """Every bounded number of `cfg` (a Config) in its range; floats finite whoever built the Config."""
    for (section, key), (allowed, ok) in FLOAT_RANGES.items():
        value, where = getattr(getattr(cfg, section), key, None), f"{section}.{key}"
        if value is not None and not ok(finite(value, where)):
            raise TicketlabError(f"{where} must be {allowed}, got {shown(value)}")
    for (section, key), (low, high) in INT_RANGES.items():
        value = getattr(getattr(cfg, section), key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise TicketlabError(f"{section}.{key} must be >= {low} and <= {high}{INT_WHY.get(section, '')}, "
                                 f"got {shown(value)}")
