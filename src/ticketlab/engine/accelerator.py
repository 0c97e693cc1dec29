"""The engine's one seam for speed: an `Accelerator` trains stages faster, the engine works without one.

The engine never imports an accelerator; the caller picks one at the edge (`ticketlab.accel.select`) and hands it to
`Lottery.open` / `train`. This base class is the pure-torch path: the configured optimizer, with gradients masked
by `MaskedUpdate`, and no batching of tickets."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.optimizers import ZERO_PRESERVING, make_optimizer
from ticketlab.engine.schedule import Plan


@dataclass
class Ticket:
    """One stage to train: its model (start weights), masks, data splits, plan and stage directory, as `train`
    takes them; `snapshot=(k, fn)` calls fn(model) after step k (the late-rewinding point θk)."""

    model: nn.Module
    masks: Masks
    splits: object
    plan: Plan
    stage: Path
    snapshot: tuple[int, Callable[[nn.Module], None]] | None = None
    desc: str = ""


class Accelerator:
    """The pure-torch path; subclasses override what they do faster, with the same results."""

    name = "torch"

    def optimizer(self, model: nn.Module, masks: Masks, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, frozenset]:
        """The optimizer of `cfg` over `model`, and the names of the parameters whose pruned entries it keeps at zero
        itself (the others get their gradients masked by the trainer)."""
        return make_optimizer(model.parameters(), cfg), frozenset()

    def preserves_zeros(self, cfg: TrainConfig) -> bool:
        """Whether the optimizer keeps pruned weights at zero once their gradients are masked (engine/optimizers.py);
        if not, the trainer re-applies the masks after every step."""
        return cfg.optimizer in ZERO_PRESERVING

    def batchable(self, model: nn.Module, input_shape: tuple) -> bool:
        """Whether copies of `model` can train as one batched model (`train_batched`)."""
        return False

    def worth_batching(self, tickets: list[Ticket]) -> bool:
        """Whether `tickets` (of a `batchable` model) train faster batched than one after another."""
        return True

    def train_batched(self, tickets: list[Ticket], cfg: TrainConfig, *, augment=None, progress: bool = False,
                      desc: str = "") -> list[list[dict]]:
        """Train `tickets` as one batched model; each one's metric rows. Only called where `batchable`."""
        raise NotImplementedError(f"the {self.name} accelerator does not batch tickets")


PURE_TORCH = Accelerator()
