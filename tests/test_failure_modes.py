"""Numerical honesty (docs/failure-modes.md): a diverged stage is recorded as such and the lottery goes no deeper;
an empty split is refused before anything is written; layer collapse and a network that stopped changing stop the
lottery with a message, unless allowed; `prune.min_density` keeps a floor."""

import json

import pytest
import torch

from ticketlab.data.source import InMemory, Splits
from ticketlab.engine import lottery as lottery_module
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.presets import build_config
from ticketlab.errors import TicketlabError

from .conftest import run_cli, run_clis

FAST = ["run", "mlp-digits", "--runs-dir", "runs", "--quiet", "--set", "lottery.baselines=[]"]


def summaries(root) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("runs/*/level_*/summary.json"))}


# The command lines of the tests below that train: all started together, once (independent run directories).
RUNS = {
    "diverging": ["--set", "train.lr=100", "--set", "train.steps=50it", "--set", "lottery.levels=2"],
    "collapse": ["--set", "prune.scope=global", "--set", "prune.rate=0.99", "--set", "train.steps=5it", "--set",
                 "lottery.levels=4"],
    "floor": ["--set", "prune.scope=global", "--set", "prune.rate=0.99", "--set", "train.steps=5it", "--set",
              "lottery.levels=3", "--set", "prune.min_density=0.01"],
    "runaway": ["--set", "prune.rate=0", "--set", "prune.rates={}", "--set", "train.steps=3it", "--set",
                "lottery.levels=1000000"],
    "allowed-collapse": ["--set", "prune.scope=global", "--set", "prune.rate=0.9", "--set", "prune.rates={}",
                         "--set", "train.steps=2it", "--set", "lottery.levels=1000000", "--set",
                         "lottery.allow_collapse=true"],
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """{name: (working directory, CompletedProcess)} of RUNS, each `ticketlab run` in a directory of its own."""
    roots = [tmp_path_factory.mktemp(name) for name in RUNS]
    results = run_clis(*[[*FAST, *args] for args in RUNS.values()], cwd=roots)
    return dict(zip(RUNS, zip(roots, results, strict=True), strict=True))


def test_a_diverging_run_ends_diverged_with_a_warning_and_goes_no_deeper(ran):
    root, result = ran["diverging"]
    assert result.returncode == 0, result.stderr
    assert "ticketlab: warning:" in result.stderr and "recorded with status diverged" in result.stderr
    assert "Traceback" not in result.stderr
    found = summaries(root)
    assert list(found) == ["level_00"]  # no level pruned from diverged weights
    level0 = found["level_00"]
    assert level0["status"] == "diverged" and "lower train.lr" in level0["message"]
    assert 0.0 <= level0["early_stop_test_acc"] <= 1.0
    again = run_cli(*FAST, *RUNS["diverging"], cwd=root)  # a rerun resumes: nothing retrained, the same stop said again
    assert again.returncode == 0 and "IMP diverged at level 0" in again.stderr
    assert summaries(root) == found


def test_global_pruning_that_empties_a_layer_stops_before_that_level(ran):
    root, result = ran["collapse"]
    assert result.returncode == 0, result.stderr
    assert "pruning for level 3 leaves no weights in fc1.weight, fc2.weight (layer collapse)" in result.stderr
    assert list(summaries(root)) == ["level_00", "level_01", "level_02"]
    assert all(s["status"] == "done" for s in summaries(root).values())


def test_min_density_keeps_a_floor_and_the_lottery_goes_on(ran):
    root, result = ran["floor"]
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    last = summaries(root)["level_03"]["layer_density"]
    assert last["fc1.weight"] >= 0.01 and last["fc2.weight"] >= 0.01


def test_a_network_that_stopped_changing_stops_the_runaway_lottery(ran):
    root, result = ran["runaway"]
    assert result.returncode == 0, result.stderr
    assert "pruning for level 1 removes no weights" in result.stderr
    assert list(summaries(root)) == ["level_00"]


def test_allowed_collapse_goes_on_until_nothing_changes(ran):
    root, result = ran["allowed-collapse"]
    assert result.returncode == 0, result.stderr
    assert "removes no weights (0 kept" in result.stderr and "layer collapse" not in result.stderr
    levels = summaries(root)
    assert 5 <= len(levels) <= 12 and levels[max(levels)]["kept"] == 0


def empty_test_splits(name, root=None, seed=0, **options):
    x, y = torch.randn(40, 64), torch.arange(40) % 10
    part = lambda a, b: InMemory(x[a:b], y[a:b])  # noqa: E731
    return Splits(part(0, 30), part(30, 40), part(40, 40), num_classes=10, input_shape=(64,), name=name)


def test_an_empty_split_is_refused_before_the_run_directory_is_made(tmp_path, monkeypatch):
    monkeypatch.setattr(lottery_module, "load_dataset", empty_test_splits)
    cfg = build_config("mlp-digits", overrides=["train.steps=2it"])
    with pytest.raises(TicketlabError, match="has an empty test split \\(0 samples\\)"):
        Lottery.open(cfg, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
