"""CIFAR-10 from the official python batches (`cifar-10-batches-py/`) in a user directory.

Each batch is a pickled dict with b'data' (N, 3072) uint8, rows holding the red, green and blue 32x32
planes in turn, and b'labels' (N ints). They are read with the restricted unpickler of `safe_pickle`.
"""

from pathlib import Path

import numpy as np
import torch

from ticketlab.data.normalise import CIFAR10_STATS, scale_pixels, standardise
from ticketlab.data.safe_pickle import load_restricted
from ticketlab.data.source import DATASETS, Source
from ticketlab.data.splits import InMemory
from ticketlab.errors import TicketlabError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)


def batches_dir(root: Path) -> Path:
    """Accept the batches directory itself or its parent."""
    if root.name != FOLDER and (root / FOLDER).is_dir():
        return root / FOLDER
    if (root / TRAIN_BATCHES[0]).is_file() or root.name == FOLDER:
        return root
    raise TicketlabError(f"missing {root / FOLDER} for dataset 'cifar10'; fetch it with "
                         f"`ticketlab data fetch cifar10 --dir {root}`")


def field(batch: dict, key: str, path: Path):
    for k in (key.encode(), key):  # official files have bytes keys; accept str keys written by Python 3
        if k in batch:
            return batch[k]
    raise TicketlabError(f"{path} has no {key!r} entry; is it a CIFAR-10 batch?")


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.is_file():
        raise TicketlabError(f"missing {path} for dataset 'cifar10'; fetch it with "
                             f"`ticketlab data fetch cifar10 --dir {path.parent.parent}`")
    batch = load_restricted(path)
    if not isinstance(batch, dict):
        raise TicketlabError(f"{path} holds a {type(batch).__name__}, not a CIFAR-10 batch dict")
    data, labels = field(batch, "data", path), field(batch, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise TicketlabError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    try:
        labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    except (TypeError, ValueError, OverflowError):
        raise TicketlabError(f"{path}: 'labels' must be a list of integers in 0..9") from None
    if labels.shape != (data.shape[0],) or (labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < 10):
        raise TicketlabError(f"{path}: 'labels' must be {data.shape[0]} integers in 0..9")
    return torch.from_numpy(data.copy()).view(-1, 3, 32, 32), labels


def read_split(folder: Path, names: tuple[str, ...]) -> InMemory:
    parts = [read_batch(folder / name) for name in names]
    pixels = torch.cat([p for p, _ in parts])
    return InMemory(standardise(scale_pixels(pixels), CIFAR10_STATS), torch.cat([y for _, y in parts]))


@DATASETS.register("cifar10")
def cifar10(root: Path) -> Source:
    """CIFAR-10 python batches: 50,000 train / 10,000 test 32x32 colour images."""
    folder = batches_dir(root)
    return Source(read_split(folder, TRAIN_BATCHES), read_split(folder, TEST_BATCHES), num_classes=10,
                  val_size=5000)
