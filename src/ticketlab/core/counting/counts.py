"""The result of counting: one `LayerCount` row per layer and `Counts`, their totals and reduction ratios."""

import json
import math
from dataclasses import asdict, dataclass, field

from ticketlab.core.counting.render import format_counts


@dataclass(frozen=True)
class LayerCount:
    """One row: a layer's parameters and its MACs per sample in the three columns."""

    name: str
    kind: str
    params: int
    prunable: int  # entries of the masked (or, without masks, default prunable) parameters
    prunable_kept: int
    macs_dense: int
    macs_weight_sparse: int
    macs_weight_act_sparse: float
    input_density: float | None  # fraction of non-zero input activations used in the third column
    density_source: str  # measured | given | assumed dense | "" (no weighted MACs)
    macs_counted: bool = True  # False for parameterised layer types whose MACs ticketlab does not know

    @property
    def kept(self) -> int:
        return self.params - (self.prunable - self.prunable_kept)

    @property
    def weight_density(self) -> float:
        return self.prunable_kept / self.prunable if self.prunable else 1.0


def ratio(before: float, after: float) -> float:
    return before / after if after else math.inf


def _finite(x):
    """JSON has no infinity: an infinite reduction (everything pruned) becomes null."""
    return None if isinstance(x, float) and math.isinf(x) else x


TOTALS = ("params", "prunable", "prunable_kept", "kept", "weight_density", "macs_dense", "macs_weight_sparse",
          "macs_weight_act_sparse", "param_reduction", "mac_reduction_weight", "mac_reduction_weight_act")


@dataclass
class Counts:
    layers: list[LayerCount]
    batch_size: int
    example_shape: tuple[int, ...]
    notes: list[str] = field(default_factory=list)

    def _sum(self, attr: str):
        return sum(getattr(row, attr) for row in self.layers)

    @property
    def params(self) -> int:
        return self._sum("params")

    @property
    def prunable(self) -> int:
        return self._sum("prunable")

    @property
    def prunable_kept(self) -> int:
        return self._sum("prunable_kept")

    @property
    def kept(self) -> int:
        return self._sum("kept")

    @property
    def weight_density(self) -> float:
        return self.prunable_kept / self.prunable if self.prunable else 1.0

    @property
    def macs_dense(self) -> int:
        return self._sum("macs_dense")

    @property
    def macs_weight_sparse(self) -> int:
        return self._sum("macs_weight_sparse")

    @property
    def macs_weight_act_sparse(self) -> float:
        return self._sum("macs_weight_act_sparse")

    @property
    def param_reduction(self) -> float:
        return ratio(self.params, self.kept)

    @property
    def mac_reduction_weight(self) -> float:
        return ratio(self.macs_dense, self.macs_weight_sparse)

    @property
    def mac_reduction_weight_act(self) -> float:
        return ratio(self.macs_dense, self.macs_weight_act_sparse)

    def layer(self, name: str) -> LayerCount:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict:
        rows = [{**asdict(r), "kept": r.kept, "weight_density": r.weight_density} for r in self.layers]
        totals = {k: _finite(getattr(self, k)) for k in TOTALS}
        return {"batch_size": self.batch_size, "example_shape": list(self.example_shape), "layers": rows,
                "total": totals, "notes": list(self.notes)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        """`print(count(model))`: the per-layer table `ticketlab count` prints (repr stays the dataclass's)."""
        return format_counts(self)
