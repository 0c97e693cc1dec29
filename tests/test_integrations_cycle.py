"""The lottery cycle the framework callbacks share, driven by a hand-written loop: whatever the rate, the number of
levels and the rewind step, densities follow the counting rule, masks only shrink, pruned weights stay exactly zero
at every step and each level starts from the rewind point."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab import PruneSpec, TicketlabError, kept_after_rounds
from ticketlab.integrations.cycle import LotteryCycle

STEPS = 5
pytestmark = pytest.mark.filterwarnings("ignore:.*layer collapse")  # rate 0.8 over 3 levels empties a layer


def model_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 3))
    return model, torch.randn(16, 6), torch.randint(0, 3, (16,))


def train(cycle: LotteryCycle, model: nn.Module, x, y) -> list[dict]:
    """One level in a loop of one's own: the five calls a framework callback makes. Returns the weights before
    training and after every step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    cycle.begin_training(model, STEPS)
    seen = [{k: v.clone() for k, v in model.state_dict().items()}]
    for step in range(1, STEPS + 1):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        cycle.before_optimizer_step()
        optimizer.step()
        cycle.after_optimizer_step(step)
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
    cycle.end_training(STEPS)
    return seen


@settings(max_examples=12, deadline=None)
@given(rate=st.sampled_from([0.1, 0.2, 0.5, 0.8]), levels=st.integers(1, 3), rewind=st.integers(0, STEPS - 1))
def test_the_cycle_over_levels(rate, levels, rewind):
    model, x, y = model_and_data()
    cycle = LotteryCycle(PruneSpec(rate=rate), rewind=rewind or "init")
    previous = None
    for level in cycle.levels(levels):
        seen = train(cycle, model, x, y)
        if level == 0:
            theta_k = seen[rewind]
        else:
            assert all(torch.equal(seen[0][n], theta_k[n] * cycle.masks[n] if n in cycle.masks else theta_k[n])
                       for n in theta_k)
            assert all(not (cycle.masks[n] & ~previous[n]).any() for n in cycle.masks)  # pruned ones never return
        for weights in seen:
            assert all(not weights[n][~cycle.masks[n]].any() for n in cycle.masks)
        assert cycle.masks.kept() == {n: kept_after_rounds(k, rate, level) for n, k in cycle.masks.numels().items()}
        previous = cycle.masks
    assert [row["level"] for row in cycle.history] == list(range(levels + 1))
    assert [row["kept"] for row in cycle.history] == [
        sum(kept_after_rounds(k, rate, i) for k in cycle.masks.numels().values()) for i in range(levels + 1)]


def test_a_rewind_step_never_reached_is_refused_when_pruning():
    model, x, y = model_and_data()
    cycle = LotteryCycle(PruneSpec(), rewind=STEPS + 3)
    cycle.begin_training(model, None)  # a length the framework does not know: checked when pruning instead
    cycle.end_training(STEPS)
    with pytest.raises(TicketlabError, match=f"rewind step {STEPS + 3} was never reached: level 0 trained {STEPS}"):
        cycle.next_level()


def test_metrics_keep_numbers_only_and_the_latest_value():
    model, x, y = model_and_data()
    cycle = LotteryCycle()
    train(cycle, model, x, y)
    cycle.record_metrics({"val_loss": torch.tensor(0.5), "val_acc": 0.25, "note": "x", "flag": True})
    cycle.record_metrics({"val_acc": 0.75})
    assert cycle.history[0]["metrics"] == {"val_loss": 0.5, "val_acc": 0.75}


def test_bad_arguments():
    with pytest.raises(TicketlabError, match="spec must be a ticketlab PruneSpec, got str"):
        LotteryCycle(spec="magnitude")
    with pytest.raises(TicketlabError, match="levels must be a whole number >= 0"):
        list(LotteryCycle().levels(-1))


def test_a_model_without_prunable_weights_is_refused():
    with pytest.raises(TicketlabError, match="LayerNorm has no Linear or ConvNd weight"):
        LotteryCycle().begin_training(nn.LayerNorm(4), STEPS)


def test_another_model_at_a_later_level_is_refused():
    model, x, y = model_and_data()
    cycle = LotteryCycle()
    train(cycle, model, x, y)
    cycle.next_level()
    with pytest.raises(TicketlabError, match="level 1 trains another model"):
        cycle.begin_training(model_and_data()[0], STEPS)


def test_a_saved_cycle_goes_on_elsewhere_as_if_never_stopped(tmp_path):
    """Levels 0-1, saved, loaded into a new model of other weights (as another process would), then on to level 3:
    the same masks, weights and history as levels 0-3 in one go."""
    spec, path = PruneSpec(rate=0.3, rates={"2.weight": 0.1}), tmp_path / "cycle.safetensors"
    whole, x, y = model_and_data()
    once = LotteryCycle(spec, rewind=2)
    for _ in once.levels(3):
        train(once, whole, x, y)

    first = model_and_data()[0]
    cycle = LotteryCycle(spec, rewind=2)
    for _ in cycle.levels(1):
        train(cycle, first, x, y)
    cycle.save(path)
    torch.manual_seed(7)
    other = nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 3))
    resumed = LotteryCycle.load(path, other)
    assert resumed.spec == spec and resumed.rewind_step == 2 and resumed.level == 1 and resumed.trained()
    levels = []
    for level in resumed.levels(3):
        levels.append(level)
        train(resumed, other, x, y)
    assert levels == [2, 3]
    assert resumed.masks == once.masks and resumed.history == once.history
    assert all(torch.equal(t, whole.state_dict()[n]) for n, t in other.state_dict().items())


def test_saving_and_loading_a_cycle_refuse_what_cannot_go_on(tmp_path):
    """Saving mid-training or before any training, loading into another architecture (the model untouched), a file
    that is not a saved cycle, a truncated one: one-line errors."""
    model, x, y = model_and_data()
    cycle, path = LotteryCycle(), tmp_path / "cycle.safetensors"
    with pytest.raises(TicketlabError, match="nothing to save: level 0 has not started training"):
        cycle.save(path)
    cycle.begin_training(model, STEPS)
    with pytest.raises(TicketlabError, match="level 0 is training: save the cycle between levels"):
        cycle.save(path)
    cycle.end_training(STEPS)
    cycle.save(path)
    wider = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    before = {n: t.clone() for n, t in wider.state_dict().items()}
    with pytest.raises(TicketlabError, match=r"tensor '0.weight' has shape \(7, 6\), the model \(8, 6\) \(another "
                                             r"architecture\?\)"):
        LotteryCycle.load(path, wider)
    assert all(torch.equal(t, before[n]) for n, t in wider.state_dict().items())
    cycle.masks.save(tmp_path / "masks.safetensors")
    with pytest.raises(TicketlabError, match="is not a saved lottery cycle"):
        LotteryCycle.load(tmp_path / "masks.safetensors", model)
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.raises(TicketlabError, match="corrupt or truncated"):
        LotteryCycle.load(tmp_path / "cut.safetensors", model)
