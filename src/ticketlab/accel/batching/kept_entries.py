"""The kept entries of a stacked weight (K, *shape) under stacked masks, as the sparse layers train them
(sparse_linear.py, sparse_conv.py): `values`, a leaf in the flat order of the stacked dense weight (copy first), and
how they map back to each copy's own weight (the optimizer's slots and checkpoints read them so)."""

import torch


class KeptEntries:
    def __init__(self, dense: torch.Tensor, masks: torch.Tensor):
        self.shape = dense.shape
        self.index = masks.reshape(-1).nonzero().squeeze(1)  # flat positions in the stacked dense weight
        self.per_copy = dense[0].numel()
        self.counts = torch.bincount(self.index // self.per_copy, minlength=dense.shape[0]).tolist()  # kept per copy
        self.values = dense.detach().reshape(-1)[self.index].requires_grad_(True)
        self.step = None  # a StepInBackward (step_in_backward.py) where the layer steps in its backward pass

    def copies(self, tensor: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """`tensor` (default: the values) split into the copies' kept entries."""
        return (self.values.detach() if tensor is None else tensor).split(self.counts)

    def copy_index(self, k: int) -> torch.Tensor:
        """Copy k's kept entries as flat positions in its own weight."""
        start = sum(self.counts[:k])
        return self.index[start : start + self.counts[k]] - k * self.per_copy

    @torch.no_grad()
    def write_dense(self, dense: torch.Tensor) -> None:
        """Bring the stacked dense weight up to date with the values."""
        dense.view(-1).index_copy_(0, self.index, self.values)
