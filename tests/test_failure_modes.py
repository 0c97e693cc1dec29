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

from .conftest import run_cli

FAST = ["run", "mlp-digits", "--runs-dir", "runs", "--quiet", "--set", "lottery.baselines=[]"]


def summaries(root) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("runs/*/level_*/summary.json"))}


def test_a_diverging_run_ends_diverged_with_a_warning_and_goes_no_deeper(tmp_path):
    result = run_cli(*FAST, "--set", "train.lr=100", "--set", "train.steps=50it", "--set", "lottery.levels=2",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ticketlab: warning:" in result.stderr and "recorded with status diverged" in result.stderr
    assert "Traceback" not in result.stderr
    found = summaries(tmp_path)
    assert list(found) == ["level_00"]  # no level pruned from diverged weights
    level0 = found["level_00"]
    assert level0["status"] == "diverged" and "lower train.lr" in level0["message"]
    assert 0.0 <= level0["early_stop_test_acc"] <= 1.0
    again = run_cli(*FAST, "--set", "train.lr=100", "--set", "train.steps=50it", "--set", "lottery.levels=2",
                    cwd=tmp_path)  # a rerun resumes: nothing retrained, the same stop said again
    assert again.returncode == 0 and "IMP diverged at level 0" in again.stderr
    assert summaries(tmp_path) == found


def test_global_pruning_that_empties_a_layer_stops_before_that_level(tmp_path):
    result = run_cli(*FAST, "--set", "prune.scope=global", "--set", "prune.rate=0.99", "--set", "train.steps=5it",
                     "--set", "lottery.levels=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pruning for level 3 leaves no weights in fc1.weight, fc2.weight (layer collapse)" in result.stderr
    assert list(summaries(tmp_path)) == ["level_00", "level_01", "level_02"]
    assert all(s["status"] == "done" for s in summaries(tmp_path).values())


def test_min_density_keeps_a_floor_and_the_lottery_goes_on(tmp_path):
    result = run_cli(*FAST, "--set", "prune.scope=global", "--set", "prune.rate=0.99", "--set", "train.steps=5it",
                     "--set", "lottery.levels=3", "--set", "prune.min_density=0.01", cwd=tmp_path)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    last = summaries(tmp_path)["level_03"]["layer_density"]
    assert last["fc1.weight"] >= 0.01 and last["fc2.weight"] >= 0.01


def test_a_network_that_stopped_changing_stops_the_runaway_lottery(tmp_path):
    result = run_cli(*FAST, "--set", "prune.rate=0", "--set", "prune.rates={}", "--set", "train.steps=3it",
                     "--set", "lottery.levels=1000000", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pruning for level 1 removes no weights" in result.stderr
    assert list(summaries(tmp_path)) == ["level_00"]


def test_allowed_collapse_goes_on_until_nothing_changes(tmp_path):
    result = run_cli(*FAST, "--set", "prune.scope=global", "--set", "prune.rate=0.9", "--set", "prune.rates={}",
                     "--set", "train.steps=2it", "--set", "lottery.levels=1000000", "--set",
                     "lottery.allow_collapse=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "removes no weights (0 kept" in result.stderr and "layer collapse" not in result.stderr
    levels = summaries(tmp_path)
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
