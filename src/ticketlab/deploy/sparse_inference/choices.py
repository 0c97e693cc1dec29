"""What `sparsify` measured and chose per layer and batch size, and a table of it."""

from dataclasses import dataclass

from torch import nn

from ticketlab.deploy.sparse_inference.layers import SparseLayer


@dataclass
class LayerChoice:
    name: str
    density: float
    batch: int
    kernel: str
    dense_seconds: float
    best_seconds: float
    timings: dict[str, float]

    @property
    def speedup(self) -> float:
        return self.dense_seconds / self.best_seconds


def _choices(name: str, layer: SparseLayer) -> list[LayerChoice]:
    return [LayerChoice(name, layer.density, batch, kernel, layer.timings[batch]["dense"], layer.timings[batch][kernel],
                        layer.timings[batch]) for batch, kernel in sorted(layer.plan.items())]


def layer_choices(model: nn.Module) -> list[LayerChoice]:
    """What `sparsify` measured and chose, per measured layer and batch size (dense ones included)."""
    return list(getattr(model, "sparse_choices", []))


def format_choices(choices: list[LayerChoice]) -> str:
    lines = [f"{'layer':<12} {'kept':>6} {'batch':>5}  {'kernel':<15} {'dense us':>9} {'chosen us':>9} {'speedup':>7}"]
    for c in choices:
        lines.append(f"{c.name:<12} {100 * c.density:5.1f}% {c.batch:>5}  {c.kernel:<15} "
                     f"{1e6 * c.dense_seconds:9.1f} {1e6 * c.best_seconds:9.1f} {c.speedup:6.2f}x")
    return "\n".join(lines)
