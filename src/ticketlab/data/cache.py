"""Where data lives: the user's data directory (fetched files) and the cache of generated tensors."""

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import torch

from ticketlab.core.files import load_tensors, save_tensors
from ticketlab.errors import TicketlabError


def cache_dir() -> Path:
    """$TICKETLAB_CACHE, else ~/.cache/ticketlab."""
    return Path(os.environ.get("TICKETLAB_CACHE") or Path.home() / ".cache" / "ticketlab")


def data_dir() -> Path:
    """Default home of fetched datasets: $TICKETLAB_DATA, else <cache dir>/datasets."""
    return Path(os.environ.get("TICKETLAB_DATA") or cache_dir() / "datasets")


def cached_tensors(key: str, build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """`build()` once, then read it back from <cache dir>/<key>.safetensors.

    The cache is disposable: a corrupt file is rebuilt rather than reported, and writes are atomic so two
    processes filling it at once both end up with a whole file.
    """
    path = cache_dir() / f"{key}.safetensors"
    if path.exists():
        try:
            return load_tensors(path)[0]
        except TicketlabError:
            pass
    tensors = build()
    with contextlib.suppress(OSError):  # a read-only home must not stop the data from loading
        save_tensors(path, tensors, metadata={"key": key})
    return tensors
