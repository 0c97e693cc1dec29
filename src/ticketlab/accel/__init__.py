"""Training accelerators that plug into the engine (ticketlab.engine.accelerator): compact and masked-kernel
optimizers, and K tickets trained as one batched model. The engine never imports this package; `select` is the one
place a caller picks the accelerator."""

from torch import nn

from ticketlab.accel.torch_mirror import mirrors_torch
from ticketlab.core.masks import Masks
from ticketlab.engine.accelerator import PURE_TORCH, Accelerator, Ticket
from ticketlab.engine.config import TrainConfig


class Kernels(Accelerator):
    """KeptOptimizer (kept entries only, or the masked Adam kernel) and batched tickets with sparse kernels. Same
    results as the pure-torch path for one stage; batched stages match up to rounding (part of the run's identity
    through `train.batch_tickets`)."""

    name = "kernels"

    def optimizer(self, model: nn.Module, masks: Masks, cfg: TrainConfig):
        from ticketlab.accel.kept_optimizer import KeptOptimizer

        kept = KeptOptimizer.for_model(model, masks, cfg)
        return (kept if kept.handled else kept.optimizer), kept.names  # nothing pruned: the plain optimizer

    def batchable(self, model: nn.Module, input_shape: tuple) -> bool:
        from ticketlab.accel.batching import batchable

        return batchable(model, input_shape)

    def worth_batching(self, tickets: list[Ticket]) -> bool:
        from ticketlab.accel.batching.worth import worth_batching

        return worth_batching(tickets)

    def train_batched(self, tickets: list[Ticket], cfg: TrainConfig, *, augment=None, progress: bool = False,
                      desc: str = "") -> list[list[dict]]:
        from ticketlab.accel.batching import train_batched

        return train_batched(tickets, cfg, augment=augment, progress=progress, desc=desc)


KERNELS = Kernels()


def select(enabled: bool = True) -> Accelerator:
    """The accelerator a run uses: our kernels, or the pure-torch path when `enabled` is False or this torch is not
    the release our kernels mirror (torch_mirror.py: said once on stderr; batching, whose equality with separate runs
    was checked on that release, stands down too)."""
    return KERNELS if enabled and mirrors_torch() else PURE_TORCH


__all__ = ["KERNELS", "PURE_TORCH", "Accelerator", "Kernels", "select"]
