"""Rewind modes: what the survivors of a pruning round restart from, in a registry users extend with one decorator.

`lottery.rewind` names a registered mode, or is a duration ('500it', '2ep'): late rewinding to θk, the weights after
k steps of the dense level 0 (Frankle et al. 2020). A mode maps the length of training to a `Rewind`; the lottery
(ticketlab.engine.lottery) turns that into the start weights and the plan of every level from 1 on.

    from ticketlab.engine.rewind import REWINDS, Rewind

    @REWINDS.register("halfway")      # now a valid `--set lottery.rewind=halfway`
    def halfway(total, steps_per_epoch):
        return Rewind(step=total // 2)  # θ at mid-training; the schedule continues from there
"""

from collections.abc import Callable
from dataclasses import dataclass

from ticketlab.core.registry import Registry
from ticketlab.engine.durations import parse_duration
from ticketlab.errors import TicketlabError


@dataclass(frozen=True)
class Rewind:
    """Where levels >= 1 start. `step` k: the kept weights go back to θk, the weights of level 0 after k steps (0: θ0,
    the initialisation), and the schedule continues from step k with a fresh optimizer. `step` None: no weight
    rewinding, the previous level's final weights train again, through the whole schedule from step 0 or, with
    `final_lr`, at the schedule's final learning rate (fine-tuning)."""

    step: int | None
    final_lr: bool = False


RewindMode = Callable[[int, int], Rewind]  # (training steps of a level, steps per epoch) -> Rewind
REWINDS: Registry[RewindMode] = Registry("rewind mode")


@REWINDS.register("init")
def to_init(total: int, steps_per_epoch: int) -> Rewind:
    """θ0, the initial weights (Frankle & Carbin 2019); the schedule from step 0."""
    return Rewind(step=0)


@REWINDS.register("none")
def fine_tune(total: int, steps_per_epoch: int) -> Rewind:
    """No rewinding: the previous level's final weights, at the schedule's final learning rate."""
    return Rewind(step=None, final_lr=True)


@REWINDS.register("lr")
def lr_rewinding(total: int, steps_per_epoch: int) -> Rewind:
    """Learning-rate rewinding (Renda et al. 2020): the previous level's final weights, the whole schedule again."""
    return Rewind(step=None)


def rewind_for(setting: str, total: int, steps_per_epoch: int) -> Rewind:
    """The `Rewind` of `lottery.rewind`: a registered mode's, or θk for a duration; refused beyond the training."""
    if setting in REWINDS:
        rewind = REWINDS.get(setting)(total, steps_per_epoch)
    else:
        rewind = Rewind(step=parse_duration(setting, steps_per_epoch, "lottery.rewind"))
    if rewind.step and rewind.step >= total:  # θ0 is always there, even for a level of no steps
        raise TicketlabError(f"lottery.rewind {setting!r} is step {rewind.step}, beyond the {total} training steps")
    return rewind
