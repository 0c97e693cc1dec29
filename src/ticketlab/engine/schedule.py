"""A stage's schedule: how it steps through its data and learning rates.

A `Plan` says which steps a stage trains, the learning rate at each and when to evaluate and checkpoint; the data
order and the learning rate are pure functions of the step, so a stage resumed from a checkpoint continues exactly
where it stopped."""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ticketlab.engine.config import TrainConfig, parse_duration
from ticketlab.errors import TicketlabError


@dataclass
class Plan:
    """How one stage trains: steps [start, total), the lr at each step, when to evaluate and checkpoint."""

    total: int
    steps_per_epoch: int
    batch_size: int
    data_seed: int
    lr: Callable[[int], float]
    eval_every: int
    checkpoint_every: int
    start: int = 0


def make_plan(cfg: TrainConfig, n_train: int, batch_size: int, data_seed: int) -> Plan:
    spe = math.ceil(n_train / batch_size)
    total, eval_every, checkpoint_every = (at_least_one_step(getattr(cfg, key), spe, f"train.{key}")
                                           for key in ("steps", "eval_every", "checkpoint_every"))
    return Plan(
        total=total,
        steps_per_epoch=spe,
        batch_size=batch_size,
        data_seed=data_seed,
        lr=lr_schedule(cfg, total, spe),
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
    )


def at_least_one_step(text: str, steps_per_epoch: int, what: str) -> int:
    """A duration of one step or more: no training, or evaluating every 0 steps, is a mistake, never a setting."""
    steps = parse_duration(text, steps_per_epoch, what)
    if steps < 1:
        raise TicketlabError(f"{what} {text!r} is no step at all; give at least '1it'")
    return steps


def lr_schedule(cfg: TrainConfig, total: int, spe: int) -> Callable[[int], float]:
    """lr(step): linear warmup, then constant, step milestones (x gamma each), or linear or cosine decay to zero."""
    warmup = parse_duration(cfg.warmup, spe, "train.warmup")
    milestones = [parse_duration(m, spe, "train.milestones entry") for m in cfg.milestones]

    def lr(step: int) -> float:
        factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if cfg.schedule == "step":
            factor *= cfg.gamma ** sum(step >= m for m in milestones)
        elif cfg.schedule == "linear":
            factor *= max(0.0, 1 - min(step, total) / max(total, 1))
        elif cfg.schedule == "cosine":
            factor *= 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))
        return cfg.lr * factor

    return lr


@functools.lru_cache(maxsize=64)
def epoch_order(data_seed: int, epoch: int, n: int) -> torch.Tensor:
    """The permutation of epoch `epoch` (cached: every step of an epoch slices the same one; never mutated)."""
    g = torch.Generator().manual_seed(data_seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def batch_indices(step: int, n: int, plan: Plan) -> torch.Tensor:
    """Indices of the batch at `step`: epoch e uses a permutation seeded by (data seed, e)."""
    epoch, pos = divmod(step, plan.steps_per_epoch)
    return epoch_order(plan.data_seed, epoch, n)[pos * plan.batch_size : (pos + 1) * plan.batch_size]
