"""Datasets as in-memory tensors with a validation split carved from the training data.

    from ticketlab.data import load_dataset, batches
    splits = load_dataset("mnist-mini", seed=0)          # Splits(train, val, test, num_classes, input_shape)
    for x, y in batches(splits.train, 60, torch.Generator().manual_seed(1)):
        ...

Register your own dataset with `@DATASETS.register("name")` (see `ticketlab.data.source`).
"""

# Importing a source module registers it; text sources import transformers only when one is loaded.
from ticketlab.data import bundled, cifar, csbm, idx, mnli, pairs, planetoid  # noqa: F401
from ticketlab.data.batches import Batches, batches
from ticketlab.data.cache import cache_dir, data_dir
from ticketlab.data.fetch import REMOTES, Remote, fetch
from ticketlab.data.source import DATASETS, Source, load_dataset
from ticketlab.data.splits import InMemory, Splits, stratified_holdout

__all__ = [
    "DATASETS", "Batches", "InMemory", "REMOTES", "Remote", "Source", "Splits", "batches", "cache_dir",
    "data_dir", "fetch", "load_dataset", "stratified_holdout",
]
