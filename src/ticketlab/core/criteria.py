"""Pruning criteria: how a pruning round scores what it may remove, in a registry users extend with one decorator.

A criterion is a scoring function `score(weight, mask, generator) -> scores` over the units of one tensor: single
weights (`unit="weight"`: one score per entry, any shape with the weight's numel) or neurons (`unit="neuron"`: one
score per row of the weight, an output unit or a conv filter, removed whole). `mask` is the tensor's current mask
(True = kept) on the weight's device; `generator` is the round's torch.Generator, seeded by `PruneSpec.seed` and shared
by the tensors of the round in order, so random scores are reproducible. `ticketlab.core.pruning.prune` then removes
the alive units of lowest worth, the worth being the score's absolute value (signed scores rank by size, as weights
do); it decides how many (rate, scope) and breaks ties by position.

    from ticketlab import CRITERIA

    @CRITERIA.register("relative")     # now a valid `PruneSpec(criterion=...)` and `--set prune.criterion=...`
    def relative_magnitude(weight, mask, generator):
        w = weight.detach().abs()
        return w / (w * mask).sum(dim=1, keepdim=True).clamp_min(1e-12)   # |w| over its row's kept total
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ticketlab.core.registry import Registry
from ticketlab.errors import TicketlabError, unknown

Score = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
UNITS = ("weight", "neuron")


@dataclass(frozen=True)
class Criterion:
    """A registered criterion: its name, scoring function and unit (see the module's docstring)."""

    name: str
    score: Score
    unit: str = "weight"

    def units(self, weight: torch.Tensor, mask: torch.Tensor, generator: torch.Generator):
        """Flat (scores, alive) over the units of one tensor; a unit is alive while any of its weights is kept."""
        mask = mask.to(weight.device)
        scores = self.score(weight, mask, generator)
        alive = mask.reshape(weight.shape[0], -1).any(dim=1) if self.unit == "neuron" else mask.reshape(-1)
        if scores.numel() != alive.numel():
            raise TicketlabError(f"pruning criterion {self.name!r} gave {scores.numel()} scores for a tensor of shape "
                                 f"{tuple(weight.shape)}; its unit {self.unit!r} needs {alive.numel()}")
        return scores.reshape(-1), alive


class CriterionRegistry(Registry[Criterion]):
    def register(self, name: str, *, unit: str = "weight", replace: bool = False) -> Callable[[Score], Score]:
        """Decorator on a scoring function; returns the function unchanged."""
        if unit not in UNITS:
            raise unknown("criterion unit", unit, UNITS)

        def add(score: Score) -> Score:
            super(CriterionRegistry, self).register(name, replace=replace)(Criterion(name, score, unit))
            return score

        return add


CRITERIA = CriterionRegistry("pruning criterion")


@CRITERIA.register("magnitude")
def magnitude(weight: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """|w|: the weight itself, ranked by absolute value (no copy; negative weights count like positive ones)."""
    return weight.detach()


@CRITERIA.register("random")
def random_scores(weight: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform random scores drawn from the round's seeded generator."""
    return torch.rand(weight.numel(), generator=generator).to(weight.device)


@CRITERIA.register("neuron", unit="neuron")
def neuron_norm(weight: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The L2 norm of each neuron's kept incoming weights (a row of the weight: output unit or conv filter)."""
    return (weight.detach() * mask).reshape(weight.shape[0], -1).float().norm(dim=1)
