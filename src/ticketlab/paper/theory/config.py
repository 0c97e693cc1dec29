"""Experiment settings: frozen dataclasses whose fields are the knobs, with defaults = the default (docs) size.

`apply_overrides(cfg, ["N=100,200", "trials=5"])` parses `--set KEY=VALUE` strings by the field's type
(int, float, str, or a comma-separated tuple of them); unknown keys and unparsable values are user errors.
"""

import dataclasses
import typing

from ticketlab.errors import TicketlabError, unknown


def _parse(kind, text: str, key: str):
    origin = typing.get_origin(kind)
    if origin is tuple:
        inner = typing.get_args(kind)[0]
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise TicketlabError(f"--set {key}= needs at least one value")
        return tuple(_parse(inner, p.strip(), key) for p in parts)
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return None if text.lower() == "none" else _parse(args[0], text, key)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        return kind(text)
    except ValueError:
        raise TicketlabError(f"--set {key}={text!r}: expected {getattr(kind, '__name__', kind)}") from None


def apply_overrides(cfg, assignments: list[str]):
    """A copy of `cfg` with `KEY=VALUE` assignments applied (types from the dataclass annotations)."""
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise TicketlabError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in hints:
            raise unknown(f"setting of {type(cfg).__name__}", key, hints)
        changes[key] = _parse(hints[key], value.strip(), key)
    return dataclasses.replace(cfg, **changes)


def describe(cfg) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
