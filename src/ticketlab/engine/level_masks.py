"""A level's IMP masks: all ones at level 0; at level L, level L-1's masks pruned from its final weights by the
run's `prune.*` settings (ticketlab.core.pruning, with the criterion from ticketlab.core.criteria). Masks a level
already saved are reused, so a resumed run prunes exactly as the first attempt did."""

import math
from collections.abc import Callable

import torch
from torch import nn

from ticketlab.core.masks import Masks, prunable_names
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.engine import distributed
from ticketlab.engine.config import Config
from ticketlab.engine.store import RunStore
from ticketlab.errors import TicketlabError


def level_masks(cfg: Config, store: RunStore, level: int, model: nn.Module,
                final_weights: Callable[[int], nn.Module]) -> Masks:
    """The masks of `level`; `final_weights(L)` gives a model holding level L's final weights. Data-parallel: computed
    on rank 0 and broadcast to the others."""
    return distributed.from_rank_zero(lambda: compute(cfg, store, level, model, final_weights))


def compute(cfg: Config, store: RunStore, level: int, model: nn.Module,
            final_weights: Callable[[int], nn.Module]) -> Masks:
    path = store.level(level) / "masks.safetensors"
    if path.exists():
        return load_checked(path, model)
    if level == 0:
        return Masks.ones(model, names=prunable_names(model))
    weights, before = final_weights(level - 1), load_checked(store.level(level - 1) / "masks.safetensors", model)
    masks = prune(weights, before, prune_spec(cfg, level), warn_collapse=False)  # the stopping rule names them
    return with_floor(masks, before, weights, cfg.prune.min_density) if cfg.prune.min_density else masks


def with_floor(masks: Masks, before: Masks, weights: nn.Module, min_density: float) -> Masks:
    """`masks` with every tensor keeping at least ceil(min_density x its size) weights (`prune.min_density`), or all
    it kept `before` if fewer: the largest-magnitude survivors of `before` come back where pruning went below."""
    params, out = dict(weights.named_parameters()), dict(masks.items())
    for name, mask in masks.items():
        need = min(math.ceil(min_density * mask.numel()), int(before[name].sum()))
        if int(mask.sum()) >= need:
            continue
        scores = params[name].detach().abs().flatten().float().masked_fill(~before[name].flatten(), -1.0)
        keep = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
        keep[scores.topk(need).indices.to(mask.device)] = True
        out[name] = keep.view(mask.shape)
    return Masks(out)


def load_checked(path, model: nn.Module) -> Masks:
    """A level's saved masks, checked against the model before any stage of the level writes a byte: a file of
    another model fails here, not after the baselines' masks have been overwritten."""
    masks = Masks.load(path)
    try:
        masks.check(model)
    except TicketlabError as e:
        raise TicketlabError(f"{path} does not fit the model: {e}; delete the level's directory to prune it "
                             "again") from None
    return masks


def prune_spec(cfg: Config, level: int) -> PruneSpec:
    """The pruning round that makes `level`, its seed offset by the level."""
    p = cfg.prune
    rate, rates = p.rate, dict(p.rates)
    if p.rate_of == "original":  # remove `rate` of the original count: of the remaining 1 - rate*(level-1)
        rate, rates = of_remaining(rate, level), {k: of_remaining(r, level) for k, r in rates.items()}
    return PruneSpec(p.criterion, p.scope, rate, rates, tuple(p.exclude), seed=cfg.seeds.prune + level)


def of_remaining(rate_of_original: float, level: int) -> float:
    """The rate of the remaining weights that removes `rate_of_original` of the original ones at `level`."""
    remaining = 1.0 - rate_of_original * (level - 1)
    if remaining <= rate_of_original:
        raise TicketlabError(f"prune.rate {rate_of_original} of the original weights leaves nothing to prune at level "
                             f"{level}; lower lottery.levels to at most {int(1 / rate_of_original) - 1}")
    return rate_of_original / remaining
