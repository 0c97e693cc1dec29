import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.core.pruning import (
    PruneSpec,
    density_after_rounds,
    kept_after_rounds,
    prune,
    random_like,
    round_half_up,
    rounds_to_reach,
)
from ticketlab.errors import TicketlabError

shapes = st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=1, max_size=4)
rates = st.floats(0.0, 0.95)


def mlp_with(shapes, seed, values=None):
    """A stack of Linear layers with the given (out, in) shapes; `values` draws weights from a small set (ties)."""
    torch.manual_seed(seed)
    model = nn.ModuleDict({f"l{i}": nn.Linear(i_, o, bias=False) for i, (o, i_) in enumerate(shapes)})
    if values is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.tensor(values)[torch.randint(len(values), p.shape)])
    return model


def random_masks(model, seed, keep=0.7):
    g = torch.Generator().manual_seed(seed)
    return Masks({n: torch.rand(p.shape, generator=g) < keep for n, p in model.named_parameters()})


@settings(max_examples=60, deadline=None)
@given(shapes, rates, st.integers(0, 2**16))
def test_layerwise_removes_exact_count_per_tensor_and_only_shrinks(shapes, rate, seed):
    model = mlp_with(shapes, seed)
    masks = random_masks(model, seed)
    new = prune(model, masks, PruneSpec(rate=rate))
    for n in masks:
        assert not (new[n] & ~masks[n]).any()  # pruned weights never come back
        before = int(masks[n].sum())
        assert int(new[n].sum()) == before - round_half_up(rate * before)


@settings(max_examples=60, deadline=None)
@given(shapes, rates, st.integers(0, 2**16))
def test_global_removes_exact_total_by_one_threshold(shapes, rate, seed):
    model = mlp_with(shapes, seed)
    masks = random_masks(model, seed)
    new = prune(model, masks, PruneSpec(rate=rate, scope="global"))
    before = sum(masks.kept().values())
    assert sum(new.kept().values()) == before - round_half_up(rate * before)
    params = dict(model.named_parameters())
    kept = torch.cat([params[n].detach().abs()[new[n]] for n in new])
    removed = torch.cat([params[n].detach().abs()[masks[n] & ~new[n]] for n in new])
    if kept.numel() and removed.numel():
        assert removed.max() <= kept.min()  # one threshold across tensors


@settings(max_examples=40, deadline=None)
@given(shapes, rates, st.integers(0, 2**16))
def test_ties_are_broken_by_position_and_deterministic(shapes, rate, seed):
    model = mlp_with(shapes, seed, values=[-1.0, 0.5, 1.0])
    masks = Masks.ones(model, names=[n for n, _ in model.named_parameters()])
    a = prune(model, masks, PruneSpec(rate=rate, scope="global"))
    assert a == prune(model, masks, PruneSpec(rate=rate, scope="global"))
    flat_removed = torch.cat([(~a[n]).reshape(-1) for n in a])
    flat_abs = torch.cat([p.detach().abs().reshape(-1) for _, p in model.named_parameters()])
    for value in (0.5, 1.0):
        tied = flat_removed[flat_abs == value]
        # Among equal magnitudes, removed entries come first in position order.
        assert not (tied[1:] & ~tied[:-1]).any()


def test_negative_weights_ranked_by_magnitude():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-3.0, 0.1, 2.0, -0.2]]))
    new = prune(model, Masks.ones(model), PruneSpec(rate=0.5))
    assert new["weight"].tolist() == [[True, False, True, False]]


def test_pruned_weight_with_large_value_stays_pruned():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[5.0, 1.0, 2.0, 3.0]]))
    masks = Masks({"weight": torch.tensor([[False, True, True, True]])})
    new = prune(model, masks, PruneSpec(rate=0.34))
    assert new["weight"].tolist() == [[False, False, True, True]]


def test_random_is_seeded_and_differs_across_seeds():
    model = mlp_with([(20, 30)], 0)
    masks = Masks.ones(model, names=["l0.weight"])
    a = prune(model, masks, PruneSpec(criterion="random", rate=0.5, seed=1))
    assert a == prune(model, masks, PruneSpec(criterion="random", rate=0.5, seed=1))
    assert a != prune(model, masks, PruneSpec(criterion="random", rate=0.5, seed=2))


def test_neuron_pruning_removes_whole_rows_with_smallest_norm():
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Conv2d(2, 4, 3, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1, 1], [0.1, 0, 0], [-2, 0, 0], [0, 0.2, 0]]))
        model[1].weight.copy_(torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 2, 3, 3))
    new = prune(model, Masks.ones(model), PruneSpec(criterion="neuron", rate=0.5))
    assert new["0.weight"].all(dim=1).tolist() == [True, False, True, False]
    assert not new["0.weight"][[1, 3]].any()
    assert new["1.weight"].reshape(4, -1).all(dim=1).tolist() == [False, False, True, True]


def test_rate_overrides_and_exclusions():
    model = mlp_with([(10, 10), (10, 10), (3, 10)], 0)
    masks = Masks.ones(model, names=["l0.weight", "l1.weight", "l2.weight"])
    new = prune(model, masks, PruneSpec(rate=0.2, rates={"l2.*": 0.1}, exclude=("l1.weight",), scope="global"))
    assert new.kept() == {"l0.weight": 80, "l1.weight": 100, "l2.weight": 27}


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 2**16), st.booleans())
def test_random_like_matches_densities_exactly(shapes, seed, per_tensor):
    model = mlp_with(shapes, seed)
    reference = random_masks(model, seed, keep=0.3)
    rand = random_like(reference, seed=seed, per_tensor=per_tensor)
    if per_tensor:
        assert rand.kept() == reference.kept()
    assert sum(rand.kept().values()) == sum(reference.kept().values())


def test_round_helpers_agree_with_pruning():
    assert rounds_to_reach(0.021, 0.2) == 18  # Frankle & Carbin: 2.1%... 1.9% after 18 rounds
    assert math.isclose(0.8**18, 0.018, rel_tol=0.01)
    model = mlp_with([(100, 300)], 0)
    masks = Masks.ones(model, names=["l0.weight"])
    for _ in range(5):
        masks = prune(model, masks, PruneSpec(rate=0.2))
    assert masks.kept()["l0.weight"] == kept_after_rounds(30000, 0.2, 5)
    assert density_after_rounds(masks, 0.2, 1)["l0.weight"] == 0.8


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.2"])
def test_bad_rate_is_rejected(bad):
    with pytest.raises(TicketlabError, match="rate must be in \\[0, 1\\)"):
        PruneSpec(rate=bad)


@pytest.mark.parametrize("bad", [0.0, -1, 1.01])
def test_bad_target_density_is_rejected(bad):
    with pytest.raises(TicketlabError, match="target density must be in \\(0, 1\\]"):
        rounds_to_reach(bad, 0.2)


def test_unknown_criterion_suggests():
    with pytest.raises(TicketlabError, match="did you mean 'magnitude'"):
        PruneSpec(criterion="magnitud")


def reference_global_prune(model, masks, rate):
    """Sort-based reference: stable sort alive weights by |w| (position breaks ties), drop the first k."""
    names = list(masks)
    params = dict(model.named_parameters())
    scores = torch.cat([params[n].detach().abs().reshape(-1) for n in names])
    alive = torch.cat([masks[n].reshape(-1) for n in names])
    k = round_half_up(rate * int(alive.sum()))
    order = torch.sort(scores.masked_fill(~alive, float("inf")), stable=True).indices
    keep = alive.clone()
    keep[order[:k]] = False
    out, start = {}, 0
    for n in names:
        out[n] = keep[start : start + masks[n].numel()].reshape(masks[n].shape)
        start += masks[n].numel()
    return Masks(out)


@settings(max_examples=60, deadline=None)
@given(shapes, rates, st.integers(0, 2**16), st.sampled_from([None, [-1.0, -0.5, 0.0, 0.5, 1.0]]),
       st.sampled_from([3, 7, 1 << 24]))
def test_radix_threshold_equals_sort_reference(shapes, rate, seed, values, slice_size):
    import ticketlab.core.pruning as pruning

    model = mlp_with(shapes, seed, values)
    masks = random_masks(model, seed)
    old, pruning.SLICE = pruning.SLICE, slice_size  # small slices exercise the slice boundaries
    try:
        ours = prune(model, masks, PruneSpec(rate=rate, scope="global"))
    finally:
        pruning.SLICE = old
    assert ours == reference_global_prune(model, masks, rate)
