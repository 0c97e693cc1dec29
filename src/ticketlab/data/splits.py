"""In-memory datasets and the deterministic splits carved from them.

Every dataset here fits in memory as two tensors, so a batch is one fancy-index `x[idx]` and there is no
DataLoader, no worker process and no per-sample Python call on the training path.
"""

from dataclasses import dataclass, field, replace

import torch

from ticketlab.data.batches import Batches
from ticketlab.errors import TicketlabError


@dataclass(frozen=True, eq=False)
class InMemory:
    """One split: `x` float32 (N, *input_shape) and `y` int64 (N,). Indexable like a TensorDataset."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return self.y.shape[0]

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows `indices`, as (inputs, targets): what a training step and an evaluation read
        (index_select, not x[idx]: the same rows, 3x faster here, and serial; advanced indexing spawns threads)."""
        indices = indices.to(self.x.device)
        return self.x.index_select(0, indices), self.y.index_select(0, indices)

    def example(self, n: int = 64) -> torch.Tensor:
        """The first `n` inputs: what the MAC counts of a stage's summary run the model on."""
        return self.x[:n]

    def subset(self, indices: torch.Tensor) -> "InMemory":
        return InMemory(self.x[indices], self.y[indices])

    def to(self, device) -> "InMemory":
        """The same split on `device`; batches are then cut on that device."""
        return InMemory(self.x.to(device), self.y.to(device))

    def batches(self, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True,
                drop_last: bool = False) -> Batches:
        return Batches(self, batch_size, generator, shuffle, drop_last)


@dataclass(frozen=True, eq=False)
class Splits:
    """train / val / test of one dataset. `val` is always carved from the training data, never from test."""

    train: InMemory
    val: InMemory
    test: InMemory
    num_classes: int
    input_shape: tuple[int, ...]
    name: str
    model_options: dict = field(default_factory=dict)  # see Source.model_options

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def to(self, device) -> "Splits":
        """All three splits on `device` (e.g. CUDA), so batches are cut there without host copies."""
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {v:,}" for k, v in self.sizes().items())
        return f"{self.name}: {sizes}; input {tuple(self.input_shape)}; {self.num_classes} classes"


def stratified_holdout(y: torch.Tensor, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted indices (kept, held_out) with `size` held out, each class in proportion to its count.

    Within each class the order is a seeded random permutation; every sample gets its relative position
    in its class (rank / count) and the `size` smallest positions are held out, so each class gives up
    the same fraction of its samples (to within one sample) for any `size`.
    """
    n = y.shape[0]
    if not 0 <= size <= n:
        raise TicketlabError(f"cannot hold out {size} of {n} samples; allowed: 0..{n}")
    shuffled = torch.randperm(n, generator=generator)
    by_class = shuffled[torch.sort(y[shuffled], stable=True).indices]  # grouped by class, random inside
    counts = torch.bincount(y)
    starts = torch.cumsum(counts, 0) - counts
    labels = y[by_class]
    rank = torch.arange(n) - starts[labels]
    position = (rank.double() + 0.5) / counts[labels].double()
    order = by_class[torch.sort(position, stable=True).indices]
    return order[size:].sort().values, order[:size].sort().values
