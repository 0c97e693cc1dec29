"""Mini-batches of an in-memory split: one seeded permutation per epoch, one slice per batch."""

import math

import torch

from ticketlab.errors import TicketlabError


class Batches:
    """Iterable over `(x, y)` batches of `split` (anything with tensors `.x` and `.y`).

    Each `iter()` is one epoch: with `shuffle` it draws a fresh permutation from `generator`, so a run that
    seeds its generator gets the same batch order on every machine, and successive epochs differ. Every
    sample appears exactly once per epoch (the short last batch is kept unless `drop_last`).
    """

    def __init__(self, split, batch_size: int, generator: torch.Generator | None = None,
                 shuffle: bool = True, drop_last: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise TicketlabError(f"batch size must be a positive integer, got {batch_size!r}")
        if shuffle and generator is None:
            raise ValueError("shuffle=True needs an explicit torch.Generator, so the data order is seeded")
        self.split = split
        self.batch_size = batch_size
        self.generator = generator
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.split.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        x, y = self.split.x, self.split.y
        n, size = len(y), self.batch_size
        stop = n - n % size if self.drop_last else n
        if not self.shuffle:  # contiguous slices are views: no copy at all
            for start in range(0, stop, size):
                yield x[start : start + size], y[start : start + size]
            return
        order = torch.randperm(n, generator=self.generator).to(y.device)
        for start in range(0, stop, size):
            idx = order[start : start + size]
            yield x[idx], y[idx]


def batches(split, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True,
            drop_last: bool = False) -> Batches:
    """`for x, y in batches(splits.train, 60, torch.Generator().manual_seed(0)): ...`"""
    return Batches(split, batch_size, generator, shuffle, drop_last)
