"""Your own data as a split the engine trains on: any map-style `torch.utils.data.Dataset`, or a `DataLoader` over one.

The engine draws every batch's indices itself, as a pure function of the step (engine/schedule.py), so a killed run
resumes at the exact batch it stopped at and a rerun gives the same numbers; a DataLoader's sampler and shuffling are
therefore not used, its dataset and `collate_fn` are. A batch is `collate([dataset[i] for i in indices])`; what its
items hold is the task's business (ticketlab.engine.task): `(inputs, targets)` pairs, or dicts such as a tokenised
Hugging Face dataset's."""

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, default_collate

from ticketlab.data.splits import InMemory
from ticketlab.errors import TicketlabError


@dataclass(frozen=True, eq=False)
class DatasetSplit:
    """One split over a map-style dataset; `collate` turns a list of items into a batch."""

    dataset: Dataset
    collate: object = default_collate
    eval_batch: int = 256  # items per evaluation batch: a DataLoader's batch size when one is given

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, indices: torch.Tensor):
        return self.collate([self.dataset[i] for i in indices.tolist()])

    def example(self, n: int = 64):
        """The inputs of the first `n` items when items are (inputs, targets) pairs of tensors, else None (then a
        stage's summary has no MAC counts: ticketlab cannot know what your model's forward takes)."""
        batch = self.batch(torch.arange(min(n, len(self))))
        if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
            return batch[0]
        return None


@dataclass(frozen=True, eq=False)
class UserSplits:
    """train / val / test of your data, shaped like `Splits` for the engine (no classes known: `num_classes` None)."""

    train: DatasetSplit | InMemory
    val: DatasetSplit | InMemory
    test: DatasetSplit | InMemory
    name: str = "custom"
    num_classes: int | None = None
    model_options: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple:
        example = self.train.example(1)
        return tuple(example.shape[1:]) if isinstance(example, torch.Tensor) else ()

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def as_split(data, what: str) -> DatasetSplit | InMemory:
    """A DataLoader, a map-style Dataset or an InMemory split, as a split the engine can index."""
    if isinstance(data, InMemory):
        return data
    collate, eval_batch = default_collate, 256
    if isinstance(data, DataLoader):
        collate, eval_batch = data.collate_fn or default_collate, data.batch_size or eval_batch
        data = data.dataset
    if isinstance(data, IterableDataset):
        raise TicketlabError(f"{what} data is an IterableDataset, which has no indices to resume from; pass a "
                             f"map-style Dataset (with __len__ and __getitem__) or a DataLoader over one")
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TicketlabError(f"{what} data must be a torch Dataset or DataLoader, got {type(data).__name__}")
    if len(data) == 0:
        raise TicketlabError(f"{what} data has no samples; pass a dataset with at least one")
    if isinstance(data, TensorDataset) and len(data.tensors) == 2 and collate is default_collate:
        return InMemory(*data.tensors)  # the same batches, cut by index_select rather than item by item
    return DatasetSplit(data, collate, eval_batch)
