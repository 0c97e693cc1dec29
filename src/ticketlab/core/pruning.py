"""Pruning: a model's current weights and masks in, a new, smaller `Masks` out.

Two orthogonal choices (`PruneSpec`):
  criterion  how units are scored: a name registered in `ticketlab.core.criteria.CRITERIA` (built in: magnitude |w|,
             random (seeded), neuron (L2 norm of each output neuron's / filter's kept weights)); users add their own
  scope      layer (each tensor loses `rate` of its remaining weights) | global (one threshold across tensors)

Counting rule: a tensor with `n` remaining weights loses `round_half_up(rate * n)` of them; globally the pool of all
remaining weights in scope loses `round_half_up(rate * total)`. For `neuron`, the unit is a whole neuron (row of the
weight): `round_half_up(rate * remaining neurons)` are removed. Ties in the score are broken by position: the entry
with the lower flat index (in the order of the tensors, then row-major) is removed first. Already-pruned weights
never come back, and negative weights are ranked by |w| like positive ones.

Layer collapse: a round that leaves a tensor with no weights (global scope can empty a small layer) cuts the network;
`prune` says so in a `LayerCollapseWarning` naming the tensors. The lottery checks the same `collapsed` tensors and
stops before such a level (ticketlab.engine.stopping; `prune.min_density`, `lottery.allow_collapse`).
"""

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from ticketlab.core.criteria import CRITERIA, Criterion
from ticketlab.core.masks import Masks, match_names
from ticketlab.errors import TicketlabError, unknown

SCOPES = ("layer", "global")  # how tensors pool their units: not an extension point, the counting rule depends on it


def check_rate(rate: float, what: str = "rate") -> float:
    if not (isinstance(rate, int | float) and 0.0 <= rate < 1.0):
        raise TicketlabError(f"{what} must be in [0, 1) (fraction of remaining weights removed), got {rate!r}")
    return float(rate)


def check_density(density: float, what: str = "target density") -> float:
    if not (isinstance(density, int | float) and 0.0 < density <= 1.0):
        raise TicketlabError(f"{what} must be in (0, 1] (fraction of weights kept), got {density!r}")
    return float(density)


def round_half_up(x: float) -> int:
    # A small epsilon keeps 0.2 * 5 == 1.0000000000000002 and 0.5-cases stable across platforms.
    return math.floor(x + 0.5 + 1e-9)


@dataclass(frozen=True)
class PruneSpec:
    """What one pruning round does. `rates` overrides `rate` for names/globs (those tensors are pruned layer-wise
    at their own rate even under global scope); `exclude` names/globs are never pruned."""

    criterion: str = "magnitude"
    scope: str = "layer"
    rate: float = 0.2
    rates: dict[str, float] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self):
        CRITERIA.get(self.criterion)  # an unknown name is refused here, with the registered ones
        if self.scope not in SCOPES:
            raise unknown("pruning scope", self.scope, SCOPES)
        check_rate(self.rate)
        for pattern, r in self.rates.items():
            check_rate(r, f"rate for {pattern!r}")


class LayerCollapseWarning(UserWarning):
    """A pruning round left a tensor with no weights: the layer no longer passes anything on."""


def collapsed(before: Masks, after: Masks) -> list[str]:
    """The tensors that kept weights in `before` and keep none in `after` (layer collapse), in mask order."""
    kept_before, kept_after = before.kept(), after.kept()
    return [name for name in after if kept_after[name] == 0 and kept_before[name] > 0]


def prune(model: nn.Module, masks: Masks, spec: PruneSpec, *, warn_collapse: bool = True) -> Masks:
    """A new Masks with `spec` applied to `model`'s current weights; `masks` is not modified. Warns
    (`LayerCollapseWarning`) when a tensor that kept weights keeps none, unless the caller reports that itself
    (`warn_collapse=False`: the lottery, whose stopping rule names the tensors)."""
    masks.check(model)
    names = list(masks)
    excluded = set(match_names(names, spec.exclude, "exclude pattern")) if spec.exclude else set()
    overrides = {n: r for p, r in spec.rates.items() for n in match_names(names, [p], "rate pattern")}
    params = dict(model.named_parameters())
    criterion, generator = CRITERIA.get(spec.criterion), torch.Generator().manual_seed(spec.seed)

    def pool(group: list[str], rate: float) -> dict[str, torch.Tensor]:
        return _prune_pool({n: params[n] for n in group}, {n: masks[n] for n in group}, rate, criterion, generator)

    new = {n: masks[n].clone() for n in names}
    for n, r in overrides.items():
        if n not in excluded:
            new.update(pool([n], r))
    free = [n for n in names if n not in excluded and n not in overrides]
    if spec.scope == "global":
        new.update(pool(free, spec.rate))
    else:
        for n in free:
            new.update(pool([n], spec.rate))
    out = Masks(new)
    empty = collapsed(masks, out) if warn_collapse else []
    if empty:
        warnings.warn(f"pruning leaves no weights in {', '.join(empty)} (layer collapse); keep some with "
                      f"PruneSpec(exclude={empty!r}) or a lower rate for them in PruneSpec(rates=...)",
                      LayerCollapseWarning, stacklevel=2)
    return out


SLICE = 1 << 24  # elements per pass step: bounds the temporary memory of threshold finding


def _prune_pool(
    weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], rate: float, criterion: Criterion, generator
) -> dict[str, torch.Tensor]:
    """Remove round_half_up(rate * alive units) of the pooled tensors' alive units, lowest |score| first: single
    weights, or whole rows (neurons) for a criterion of unit "neuron"."""
    if not weights:
        return {}
    units = {n: criterion.units(weights[n], masks[n], generator) for n in weights}
    keep = _keep_units({n: s for n, (s, _) in units.items()}, {n: a for n, (_, a) in units.items()}, rate)
    if criterion.unit == "neuron":
        return {n: masks[n] & keep[n].reshape(-1, *([1] * (masks[n].dim() - 1))).to(masks[n].device) for n in keep}
    return {n: keep[n].reshape(masks[n].shape).to(masks[n].device) for n in keep}


def _keys(scores: torch.Tensor) -> torch.Tensor:
    """|score| as int32 keys in the same order: non-negative IEEE-754 floats sort like their bit patterns."""
    return scores.float().view(torch.int32) & 0x7FFFFFFF


def _slices(scores: dict[str, torch.Tensor], alive: dict[str, torch.Tensor]):
    for n, s in scores.items():
        for start in range(0, s.numel(), SLICE):
            yield n, start, _keys(s[start : start + SLICE]), alive[n][start : start + SLICE]


def _kth_key(scores, alive, k: int) -> tuple[int, int]:
    """The k-th smallest key among alive units, and how many alive keys are strictly smaller.

    Radix select in two counting passes (high 15 bits, then low 16 bits of the key) instead of a sort or
    kthvalue: linear time, and no copy of the scores beyond one slice at a time."""

    def bin_of(counts: torch.Tensor, k: int) -> tuple[int, int]:
        cum = counts.cumsum(0)
        b = int(torch.searchsorted(cum, torch.tensor([k], device=cum.device)))
        return b, int(cum[b - 1]) if b else 0

    device = next(iter(scores.values())).device
    # Dead units go to one extra bin past the end instead of being filtered out: boolean indexing copies and is
    # several times slower than masked_fill + bincount.
    high = torch.zeros((1 << 15) + 1, dtype=torch.int64, device=device)
    for _, _, key, a in _slices(scores, alive):
        high += torch.bincount((key >> 16).masked_fill_(~a, 1 << 15), minlength=(1 << 15) + 1)
    hi, below = bin_of(high[:-1], k)
    low = torch.zeros((1 << 16) + 1, dtype=torch.int64, device=device)
    for _, _, key, a in _slices(scores, alive):
        outside = ~(a & ((key >> 16) == hi))
        low += torch.bincount((key & 0xFFFF).masked_fill_(outside, 1 << 16), minlength=(1 << 16) + 1)
    lo, below_in_bin = bin_of(low[:-1], k - below)
    return (hi << 16) | lo, below + below_in_bin


def _keep_units(scores: dict[str, torch.Tensor], alive: dict[str, torch.Tensor], rate: float) -> dict:
    """Alive units minus the k lowest-scoring ones (ties to the lower position), k = round_half_up(rate * alive)."""
    n_alive = sum(int(torch.count_nonzero(a)) for a in alive.values())
    k = round_half_up(rate * n_alive)
    if k == 0:
        return {n: a.clone() for n, a in alive.items()}
    threshold, below = _kth_key(scores, alive, k)
    need = k - below  # how many of the units tied at the threshold go, in position order
    keep = {n: torch.empty_like(a) for n, a in alive.items()}
    for n, start, key, a in _slices(scores, alive):
        kept = a & (key >= threshold)
        if need > 0:
            ties = torch.nonzero(a & (key == threshold)).squeeze(1)[:need]
            kept[ties] = False
            need -= ties.numel()
        keep[n][start : start + key.numel()] = kept
    return keep


def random_like(reference: Masks, seed: int, per_tensor: bool = True) -> Masks:
    """Random masks with the same number of kept weights as `reference`: per tensor (the random-pruning baseline of
    Frankle & Carbin), or only in total (`per_tensor=False`: kept weights spread uniformly over all tensors)."""
    generator = torch.Generator().manual_seed(seed)
    if per_tensor:
        return Masks({n: _random_keep(m.shape, int(m.sum()), generator).to(m.device) for n, m in reference.items()})
    numels = reference.numels()
    flat = _random_keep((sum(numels.values()),), sum(reference.kept().values()), generator)
    out, start = {}, 0
    for n, m in reference.items():
        out[n] = flat[start : start + m.numel()].reshape(m.shape).to(m.device)
        start += m.numel()
    return Masks(out)


def prune_to_counts(model: nn.Module, reference: Masks, criterion: str = "magnitude", seed: int = 0) -> Masks:
    """One round from all-ones that keeps exactly as many weights per tensor as `reference` (one-shot pruning to a
    ticket's per-tensor densities)."""
    ones, kept = Masks.ones(model, names=list(reference)), reference.kept()
    # Exact counts: every tensor gets its own rate, so round_half_up(rate * numel) == numel - kept. A tensor the
    # reference keeps nothing of (an allowed collapse) would need rate 1: it is emptied here instead.
    rates = {n: 1 - kept[n] / n_all for n, n_all in reference.numels().items() if kept[n]}
    masks = prune(model, ones, PruneSpec(criterion=criterion, scope="layer", rate=0.0, rates=rates, seed=seed))
    return Masks({n: m if kept[n] else torch.zeros_like(m) for n, m in masks.items()})


def _random_keep(shape, kept: int, generator: torch.Generator) -> torch.Tensor:
    numel = math.prod(shape)
    keep = torch.zeros(numel, dtype=torch.bool)
    keep[torch.randperm(numel, generator=generator)[:kept]] = True
    return keep.reshape(shape)


def kept_after_rounds(numel: int, rate: float, rounds: int) -> int:
    """Exact number of weights a tensor keeps after `rounds` layer-wise rounds at `rate` (the rounding rule above)."""
    check_rate(rate)
    kept = numel
    for _ in range(rounds):
        kept -= round_half_up(rate * kept)
    return kept


def density_after_rounds(reference: Masks | dict[str, int], rate: float, rounds: int) -> dict[str, float]:
    """Per-tensor density after `rounds` layer-wise rounds, from a Masks or a {name: numel} dict."""
    numels = reference.numels() if isinstance(reference, Masks) else dict(reference)
    return {n: kept_after_rounds(k, rate, rounds) / k for n, k in numels.items()}


def rounds_to_reach(target_density: float, rate: float) -> int:
    """Fewest rounds at `rate` after which the density (1 - rate)^k is at most `target_density`."""
    check_density(target_density)
    check_rate(rate)
    if target_density >= 1.0:
        return 0
    if rate == 0.0:
        raise TicketlabError(f"rate 0 never reaches target density {target_density}")
    return math.ceil(math.log(target_density) / math.log(1.0 - rate) - 1e-9)
