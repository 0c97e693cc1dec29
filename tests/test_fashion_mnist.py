"""The Fashion-MNIST stand-in for Table 2's MNIST row, smoke-tested on a few thousand random images written as the
official IDX files: the preset runs from the CLI, and `ticketlab table2` shows the row with the paired comparison."""

import json

from .conftest import run_cli
from .test_data import write_idx_dir

SMOKE = ["train.steps=4it", "train.eval_every=2it", "train.checkpoint_every=2it", "lottery.levels=1",
         "data.batch_size=16"]


def test_fashion_mnist_preset_runs_and_fills_its_table2_row(tmp_path, preset="lenet300-fashion-mnist"):
    data, runs = tmp_path / "data", tmp_path / "runs"
    write_idx_dir(data, gz=True, n_train=5100, n_test=100)  # the official split keeps 5,000 for validation
    result = run_cli("run", preset, "--runs-dir", runs, "--quiet", "--seeds", "0", "1",
                     "--set", f"data.root={data}", *[a for s in SMOKE for a in ("--set", s)])
    assert result.returncode == 0, result.stderr
    assert len(list(runs.rglob("summary.json"))) == 2 * 4  # per seed: dense, the level-1 ticket, its two baselines
    table = run_cli("table2", "--runs-dir", runs, "--json")
    assert table.returncode == 0, table.stderr
    (row,) = [r for r in json.loads(table.stdout) if r["preset"] == preset]
    assert "stand-in" in row["paper"]["dataset"] and "stand-in" in row["paper"]["note"]
    (ours,) = row["ours"]
    assert ours["dense"]["seeds"] == 2 and ours["ticket_level"] == 1 and ours["gain"]["seeds"] == 2
    assert ours["gain"]["low"] <= ours["gain"]["mean"] <= ours["gain"]["high"]
    assert not ours["changed"] or set(ours["changed"]) <= {f"{k.split('=')[0]}" for k in SMOKE}


def test_the_convolutional_stand_in_runs_and_has_its_row(tmp_path):
    """LeNet-5 on the same files, one seed (the paired column is the test above's): its row names the preset."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    write_idx_dir(data, gz=True, n_train=5100, n_test=100)
    smoke = [*SMOKE[:1], "train.eval_every=4it", *SMOKE[2:]]
    result = run_cli("run", "lenet5-fashion-mnist", "--runs-dir", runs, "--quiet", "--set", f"data.root={data}",
                     *[a for s in smoke for a in ("--set", s)])
    assert result.returncode == 0, result.stderr
    table = run_cli("table2", "--runs-dir", runs, "--json")
    (row,) = [r for r in json.loads(table.stdout) if r["preset"] == "lenet5-fashion-mnist"]
    assert row["paper"]["network"] == "LeNet-5" and "stand-in" in row["paper"]["dataset"]
    (ours,) = row["ours"]
    assert ours["dense"]["seeds"] == 1 and ours["ticket_level"] == 1
