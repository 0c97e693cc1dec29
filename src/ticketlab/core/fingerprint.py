"""A model's fingerprint: what it is built of, as a short stable digest and a record that names differences.

It covers the model's class, the class of every submodule, and every parameter and buffer: name, role (trained,
frozen or buffer), dtype and shape, in registration order (the order in which initialisation draws its numbers).
It does not cover the weights' values (a run directory stores θ0 itself) nor the forward code: a change that keeps
all of the above, such as an activation written as a function call, goes unseen."""

import hashlib
import json
import re
from dataclasses import dataclass

from torch import nn

TENSOR = re.compile(r"^(?P<name>.*) (?P<role>parameter|frozen|buffer) (?P<dtype>\S+) (?P<shape>\(.*\))$")


@dataclass(frozen=True)
class Fingerprint:
    """`fingerprint(model)`; `digest` names it in 12 hex digits, `to_dict` records it, `difference` explains it."""

    model: str  # the model's class qualname
    modules: tuple[str, ...]  # "name Class" of every submodule
    tensors: tuple[str, ...]  # "name role dtype (shape)" of every parameter, then every buffer

    @property
    def digest(self) -> str:
        text = json.dumps([self.model, self.modules, self.tensors], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return {"class": self.model, "modules": list(self.modules), "tensors": list(self.tensors)}

    @classmethod
    def from_dict(cls, record: dict) -> "Fingerprint":
        return cls(str(record["class"]), tuple(record["modules"]), tuple(record["tensors"]))

    def difference(self, other: "Fingerprint") -> str | None:
        """The first difference, as '<what> <this one's> here, <other's> there'; None when they are equal."""
        if self.model != other.model:
            return f"class {self.model} here, {other.model} there"
        return (_differing_entry(_tensor_table(self.tensors), _tensor_table(other.tensors), "")
                or _differing_entry(_module_table(self.modules), _module_table(other.modules), "module ")
                or _differing_order(self, other)
                or (None if self.digest == other.digest else f"fingerprint {self.digest} here, {other.digest} there"))


def fingerprint(model: nn.Module) -> Fingerprint:
    """The fingerprint of a built model (any device; shapes, not values, so `device="meta"` models work too)."""
    modules = tuple(f"{name} {type(m).__qualname__}" for name, m in model.named_modules() if name)
    params = [(n, "parameter" if p.requires_grad else "frozen", p) for n, p in model.named_parameters()]
    buffers = [(n, "buffer", b) for n, b in model.named_buffers()]
    tensors = tuple(f"{n} {role} {str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}"
                    for n, role, t in [*params, *buffers])
    return Fingerprint(type(model).__qualname__, modules, tensors)


def _tensor_table(entries) -> dict[str, tuple[str, ...]]:
    """{name: (role, dtype, shape)}; an entry of another format keeps its whole text, so it still compares."""
    table = {}
    for entry in entries:
        match = TENSOR.match(entry)
        table[match["name"] if match else entry] = (match["role"], match["dtype"], match["shape"]) if match else ()
    return table


def _module_table(entries) -> dict[str, tuple[str, ...]]:
    return {name: (cls,) for name, _, cls in (entry.rpartition(" ") for entry in entries)}


def _differing_entry(here: dict, there: dict, what: str) -> str | None:
    """The first name present on one side only, or described differently: only the differing parts are named."""
    for name, mine in here.items():
        if name not in there:
            return f"{what}{name} {' '.join(mine)} here, absent there"
        theirs = there[name]
        if mine != theirs:
            parts = [i for i in range(max(len(mine), len(theirs))) if mine[i:i + 1] != theirs[i:i + 1]]
            return (f"{what}{name} {' '.join(mine[i] for i in parts if i < len(mine))} here, "
                    f"{' '.join(theirs[i] for i in parts if i < len(theirs))} there")
    extra = next((name for name in there if name not in here), None)
    return None if extra is None else f"{what}{extra} absent here, {' '.join(there[extra])} there"


def _differing_order(here: Fingerprint, there: Fingerprint) -> str | None:
    """Same entries, another registration order: the first position that differs."""
    for mine, theirs in zip(here.tensors, there.tensors, strict=False):
        if mine != theirs:
            first, second = (next(iter(_tensor_table([entry]))) for entry in (mine, theirs))
            return f"the same tensors in another order: {first} here, {second} there"
    return None
