"""Baselines: stages trained beside IMP at every level, in a registry users extend with one decorator.

A baseline tells what a winning ticket owes to its mask and to its start weights. It derives its stage from the
level's IMP ticket: given IMP's `Start` (level, start weights, masks) and the run, it returns its own start weights
and masks; it trains with IMP's plan, data and evaluation, in `level_NN/baselines/<name>/` (docs/run-directory.md).

    from dataclasses import replace
    from ticketlab.core.pruning import random_like
    from ticketlab.engine.baselines import BASELINES

    @BASELINES.register("random_global")   # now a valid entry of `lottery.baselines`
    def random_global(imp, run):
        # IMP's start weights; as many kept weights as IMP keeps, spread uniformly over all tensors
        return replace(imp, masks=random_like(imp.masks, seed=run.cfg.seeds.prune + imp.level, per_tensor=False))
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.core.pruning import prune_to_counts, random_like
from ticketlab.core.registry import Registry

REINIT_SEED_OFFSET = 7919  # fresh initialisations for the random-reinit baseline: init seed + offset * level


@dataclass(frozen=True)
class Start:
    """Where a stage of `level` starts: its weights (a model holding them) and its masks."""

    level: int
    model: nn.Module
    masks: Masks


class Run(Protocol):
    """What a baseline may ask of its run (a `ticketlab.engine.lottery.Lottery`)."""

    cfg: Any  # the run's ticketlab.engine.config.Config (not imported: the config checks names against BASELINES)

    def fresh_model(self, seed: int, pretrained: bool = True) -> nn.Module:
        """The run's model, initialised with `seed` (a pretrained body loaded unless `pretrained=False`)."""

    def final_weights(self, level: int) -> nn.Module:
        """The run's model holding IMP's final weights of `level`."""


Baseline = Callable[[Start, Run], Start]  # (IMP's start at a level, the run) -> the baseline's start
BASELINES: Registry[Baseline] = Registry("baseline")


@BASELINES.register("random_pruning")
def random_pruning(imp: Start, run: Run) -> Start:
    """IMP's start weights, random masks with IMP's per-tensor densities (Frankle & Carbin's random pruning)."""
    return replace(imp, masks=random_like(imp.masks, seed=run.cfg.seeds.prune * 1000 + imp.level))


@BASELINES.register("random_reinit")
def random_reinit(imp: Start, run: Run) -> Start:
    """IMP's masks, a fresh initialisation (seed `seeds.init + 7919 * level`), never the pretrained weights."""
    return replace(imp, model=run.fresh_model(run.cfg.seeds.init + REINIT_SEED_OFFSET * imp.level, pretrained=False))


@BASELINES.register("oneshot")
def oneshot(imp: Start, run: Run) -> Start:
    """IMP's start weights, masks pruned from the dense final weights straight to IMP's per-tensor counts."""
    masks = prune_to_counts(run.final_weights(0), imp.masks, run.cfg.prune.criterion, run.cfg.seeds.prune + imp.level)
    return replace(imp, masks=masks)
