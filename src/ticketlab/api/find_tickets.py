"""`find_tickets`: IMP with rewinding and its baselines on your model, data, loss and training step.

It writes the same resumable, hashed run directory as `ticketlab run` (docs/run-directory.md), so calling it again
with the same arguments resumes a killed run and ends with the same numbers, and `ticketlab report` reads the result.
What differs from a registered model and data set is only where they come from: ticketlab.api.user_model (θ0 and
fresh draws), ticketlab.data.dataset_split (batches of your Dataset) and ticketlab.engine.task (loss and metric)."""

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ticketlab.api.digests import data_digest, model_digest, task_name
from ticketlab.api.tickets import Tickets
from ticketlab.api.user_model import UserModel
from ticketlab.core.fingerprint import fingerprint
from ticketlab.core.pruning import PruneSpec
from ticketlab.data.dataset_split import UserSplits, as_split
from ticketlab.engine import preflight
from ticketlab.engine.accelerator import PURE_TORCH, Accelerator
from ticketlab.engine.config import Config, from_dict, merge
from ticketlab.engine.lottery import Lottery, open_store
from ticketlab.engine.metric_sinks import sending_to
from ticketlab.engine.task import Task
from ticketlab.engine.training import resolve_device
from ticketlab.errors import TicketlabError
from ticketlab.integrations.tensorboard import TensorBoardRuns


def find_tickets(
    model: nn.Module | Callable[[], nn.Module],
    train,
    val,
    test=None,
    *,
    loss: Callable | str | None = None,
    metric: Callable | None = None,
    step: Callable | None = None,
    optimizer: str | Callable = "adam",
    lr: float = 1.2e-3,
    steps: str | int = "10ep",
    batch_size: int | None = None,
    prune: PruneSpec | None = None,
    levels: int = 5,
    target_density: float | None = None,
    rewind: str = "init",
    baselines: Sequence[str] = ("random_pruning", "random_reinit"),
    seed: int = 0,
    runs_dir: str | Path = "runs",
    settings: dict | None = None,
    progress: bool = False,
    tensorboard: str | Path | None = None,
) -> Tickets:
    """Run IMP on `model` (a module, whose weights are θ0, or a factory returning one) trained on `train` and
    evaluated on `val` and `test` (DataLoaders or map-style Datasets; test defaults to val). Defaults: Frankle &
    Carbin's LeNet recipe (Adam 1.2e-3, 20% of each layer per level, rewind to θ0, both random baselines).

    loss (outputs, targets) -> mean loss, or "model" (the model returns .loss, Hugging Face style); metric (outputs,
    targets) -> float, higher is better (default accuracy); step (model, batch) -> (loss, outputs, targets) replaces
    both forward and loss. optimizer: "sgd" | "adam" | "adamw", or a factory params -> torch.optim.Optimizer (its
    learning rate is set every step from `lr` and the schedule). settings: any other config value,
    {"train.weight_decay": 1e-4, "train.schedule": "cosine", "train.eval_every": "100it", ...}. tensorboard: a
    directory where every metric row also goes as TensorBoard scalars (extra `tensorboard`)."""
    splits = UserSplits(as_split(train, "training"), as_split(val, "validation"),
                        as_split(val if test is None else test, "test"))
    user = UserModel(model, seed)
    factory = None if isinstance(optimizer, str) else optimizer
    task = Task(loss, metric, step)
    cfg = config(user.model, splits, task, factory, optimizer, lr, steps, batch_size or loader_batch(train), prune,
                 levels, target_density, rewind, baselines, seed, settings or {})
    if "random_reinit" in cfg.lottery.baselines:
        user.check_reinit()
    preflight.check_runs_dir(runs_dir)
    resolve_device(cfg.train.device)
    preflight.check_training(cfg, user.model, len(splits.train))
    task.check(user.model, splits.train, cfg.data.batch_size)
    accelerator = PURE_TORCH if factory is None else FactoryOptimizer(factory)
    rows_also_to = sending_to(TensorBoardRuns(tensorboard)) if tensorboard is not None else contextlib.nullcontext()
    store = open_store(runs_dir, cfg, None, fingerprint(user.model))
    with rows_also_to:
        Lottery(cfg, store, splits, user.model, progress, accelerator, task, user.build).run()
    return Tickets(store, user.build)


def config(model, splits, task, factory, optimizer, lr, steps, batch_size, prune, levels, target_density, rewind,
           baselines, seed, settings) -> Config:
    """The run's config: everything that can change its numbers, your model's θ0 and data included (api/digests.py)."""
    prune = PruneSpec() if prune is None else prune
    if not isinstance(prune, PruneSpec):
        raise TicketlabError(f"prune must be a ticketlab.PruneSpec, got {type(prune).__name__}")
    data = {
        "model": {"name": type(model).__name__.lower(), "digest": model_digest(model)},
        "data": {"name": "custom", "batch_size": batch_size, "digest": data_digest(splits)},
        "train": {"steps": f"{steps}it" if isinstance(steps, int) else steps, "lr": lr,
                  "optimizer": optimizer if factory is None else "sgd",  # a factory's is named in train.task
                  "task": task_name(task.loss, task.metric, task.step, factory and optimizer_name(factory))},
        "prune": {"criterion": prune.criterion, "scope": prune.scope, "rate": prune.rate, "rates": dict(prune.rates),
                  "exclude": list(prune.exclude)},
        "lottery": {"levels": levels, "rewind": rewind, "target_density": target_density,
                    "baselines": list(baselines)},
        "seeds": {"init": seed, "data": seed, "prune": prune.seed},
    }
    return from_dict(merge(data, nested(settings)))


def nested(settings: dict) -> dict:
    """{"train.weight_decay": 1e-4} -> {"train": {"weight_decay": 1e-4}}."""
    out: dict = {}
    for key, value in settings.items():
        section, dot, name = str(key).partition(".")
        if not dot or not name:
            raise TicketlabError(f"setting {key!r} must be 'section.key', e.g. 'train.weight_decay'")
        out.setdefault(section, {})[name] = value
    return out


def loader_batch(train) -> int:
    size = getattr(train, "batch_size", None)
    return size if isinstance(size, int) else 60


def optimizer_name(factory: Callable) -> str:
    """The factory's optimizer class and settings but the learning rate (set every step from `lr`)."""
    optimizer = factory([torch.nn.Parameter(torch.zeros(1))])
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TicketlabError(f"the optimizer factory returned {type(optimizer).__name__}, not a torch.optim.Optimizer")
    settings = {k: v for k, v in sorted(optimizer.defaults.items()) if k != "lr"}
    return f"{type(optimizer).__qualname__}{settings}"


class FactoryOptimizer(Accelerator):
    """The pure-torch path with your optimizer; the masks are re-applied after its every step, as its handling of
    zeros is unknown."""

    name = "torch"

    def __init__(self, factory: Callable):
        self.factory = factory

    def optimizer(self, model, masks, cfg):
        return self.factory(model.parameters()), frozenset()

    def preserves_zeros(self, cfg) -> bool:
        return False
