"""The dataset registry and `load_dataset`, which turns a registered source into train / val / test.

A source is a function `(root: Path) -> Source` registered with one decorator:

    @DATASETS.register("my-data")
    def my_data(root):
        "Three-class toy data."            # first docstring line is shown by `ticketlab data list`
        x, y = make_my_tensors()           # float32 (N, ...) already normalised, int64 (N,)
        return Source(train=InMemory(x[:800], y[:800]), test=InMemory(x[800:], y[800:]),
                      num_classes=3, val_size=100)

`load_dataset("my-data")` then carves the validation split from `train` like for every built-in dataset. A source
with a published validation split passes it as `Source(..., val=InMemory(...))` instead (Planetoid graphs).
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ticketlab.core.registry import Registry
from ticketlab.data.cache import data_dir
from ticketlab.data.splits import InMemory, Splits, stratified_holdout
from ticketlab.errors import TicketlabError

DATASETS: Registry = Registry("dataset")


@dataclass(frozen=True, eq=False)
class Source:
    """What a registered dataset function returns: normalised train and test data, before the val carve."""

    train: InMemory
    test: InMemory
    num_classes: int
    val_size: int  # default number of training samples held out for validation
    # Passed to model factories that take a parameter of the same name (e.g. the graph of a node-level task).
    model_options: dict = field(default_factory=dict)
    # A fixed, published validation split (e.g. Planetoid's 500 validation nodes), used instead of carving
    # `val_size` samples from `train`; it must be labelled data disjoint from train and test.
    val: InMemory | None = None


def load_dataset(name: str, root: str | Path | None = None, val_size: int | None = None, seed: int = 0,
                 **options) -> Splits:
    """Load dataset `name` and hold out `val_size` training samples (default: the dataset's) as validation.

    `root` is the directory of user-supplied files (MNIST, Fashion-MNIST, CIFAR-10; default $TICKETLAB_DATA
    or ~/.cache/ticketlab/datasets); bundled datasets ignore it. `seed` picks which training samples form
    the validation split (stratified by class); the test split never depends on it. `options` go to the source
    function (e.g. `tokenizer=DIR` for text datasets).
    """
    source = DATASETS.get(name)(Path(root).expanduser() if root is not None else data_dir(), **options)
    check_source(name, source)
    if source.val is not None:
        return fixed_splits(name, source, val_size)
    val_size = source.val_size if val_size is None else val_size
    n = len(source.train)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < n:
        raise TicketlabError(f"val size {val_size!r} for dataset {name!r} must be an integer in 0..{n - 1} (its "
                             f"{n:,} training samples); choose it with data.val_size (ticketlab data: --val-size)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TicketlabError(f"split seed must be an integer, got {seed!r}")
    kept, held = stratified_holdout(source.train.y, val_size, torch.Generator().manual_seed(seed))
    return Splits(
        train=source.train.subset(kept),
        val=source.train.subset(held),
        test=source.test,
        num_classes=source.num_classes,
        input_shape=tuple(source.train.x.shape[1:]),
        name=name,
        model_options=source.model_options,
    )


def fixed_splits(name: str, source: Source, val_size: int | None) -> Splits:
    """The source's own validation split; asking for another size is an error, not a silent change."""
    if val_size is not None and val_size != len(source.val):
        raise TicketlabError(f"dataset {name!r} has a fixed validation split of {len(source.val)} samples; "
                             f"val size {val_size!r} is not allowed (leave it unset)")
    return Splits(train=source.train, val=source.val, test=source.test, num_classes=source.num_classes,
                  input_shape=tuple(source.train.x.shape[1:]), name=name, model_options=source.model_options)


def check_source(name: str, source: Source) -> None:
    """A registered function that returns the wrong dtypes is a programming error: fail loudly here."""
    for split in ("train", "val", "test"):
        data = getattr(source, split)
        if data is None:
            continue
        # int64 x holds indices: token ids of text, node ids of a graph.
        if data.x.dtype not in (torch.float32, torch.int64) or data.y.dtype != torch.int64:
            raise TypeError(f"dataset {name!r} {split}: want x float32 or int64 and y int64, got {data.x.dtype}, "
                            f"{data.y.dtype}")
        if len(data) and not 0 <= int(data.y.min()) <= int(data.y.max()) < source.num_classes:
            raise ValueError(f"dataset {name!r} {split}: labels outside 0..{source.num_classes - 1}")
