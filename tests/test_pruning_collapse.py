"""Layer collapse outside the lottery: `prune` warns, naming the tensors, when a round leaves a tensor that kept
weights with none (global scope can empty a small layer); the lottery uses the same `collapsed` check and reports it
itself (test_failure_modes.py)."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab import Masks, PruneSpec, prune
from ticketlab.core.pruning import LayerCollapseWarning, collapsed, prune_to_counts


def small_last_layer() -> nn.Module:
    """Three Linear layers whose last one has weights far smaller than the others: global pruning takes it first."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 3))
    with torch.no_grad():
        model[4].weight.mul_(1e-3)
    return model


def test_global_pruning_that_empties_a_layer_warns_naming_it():
    model = small_last_layer()
    with pytest.warns(LayerCollapseWarning) as caught:
        masks = prune(model, Masks.ones(model), PruneSpec(scope="global", rate=0.9))
    assert masks.kept()["4.weight"] == 0 and masks.kept()["0.weight"] > 0
    [warning] = caught
    assert str(warning.message) == ("pruning leaves no weights in 4.weight (layer collapse); keep some with "
                                    "PruneSpec(exclude=['4.weight']) or a lower rate for them in PruneSpec(rates=...)")
    assert warning.filename == __file__  # points at the caller's line


def test_the_suggested_fix_keeps_the_layer_and_does_not_warn():
    model = small_last_layer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masks = prune(model, Masks.ones(model), PruneSpec(scope="global", rate=0.9, exclude=("4.weight",)))
    assert masks.kept()["4.weight"] == 60


def test_a_tensor_already_empty_is_not_warned_about_again_and_callers_that_report_it_can_silence_it():
    model = small_last_layer()
    with pytest.warns(LayerCollapseWarning):
        first = prune(model, Masks.ones(model), PruneSpec(scope="global", rate=0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = prune(model, first, PruneSpec(scope="global", rate=0.2))  # 4.weight was empty before this round
        silent = prune(model, Masks.ones(model), PruneSpec(scope="global", rate=0.9), warn_collapse=False)
        counts = prune_to_counts(model, first)  # the reference asks for the empty tensor: no surprise to warn about
    assert again.kept()["4.weight"] == silent.kept()["4.weight"] == counts.kept()["4.weight"] == 0
    assert silent == first  # the warning changes nothing in the result


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=2, max_size=4), rate=st.floats(0.0, 0.99),
       scale=st.floats(1e-4, 1.0), seed=st.integers(0, 2**16), scope=st.sampled_from(["layer", "global"]))
def test_it_warns_exactly_when_a_tensor_that_kept_weights_keeps_none(sizes, rate, scale, seed, scope):
    torch.manual_seed(seed)
    model = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False)])
    with torch.no_grad():
        model[-1].weight.mul_(scale)
    before = Masks.ones(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        after = prune(model, before, PruneSpec(scope=scope, rate=rate))
    empty = [name for name, kept in after.kept().items() if kept == 0]
    assert collapsed(before, after) == empty
    messages = [str(w.message) for w in caught if issubclass(w.category, LayerCollapseWarning)]
    assert messages == ([f"pruning leaves no weights in {', '.join(empty)} (layer collapse); keep some with "
                         f"PruneSpec(exclude={empty!r}) or a lower rate for them in PruneSpec(rates=...)"]
                        if empty else [])
