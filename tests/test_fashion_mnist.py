"""The Fashion-MNIST stand-ins for Table 2's MNIST row, smoke-tested on a few thousand random images written as the
official IDX files: each preset runs from the CLI, and `ticketlab table2` shows its row with the paired comparison."""

import json

import pytest

from .conftest import run_clis
from .test_data import write_idx_dir

SMOKE = ["train.steps=4it", "train.eval_every=2it", "train.checkpoint_every=2it", "lottery.levels=1",
         "data.batch_size=16"]
CONV_SMOKE = [*SMOKE[:1], "train.eval_every=4it", *SMOKE[2:]]  # LeNet-5: half the 5,000-image evaluations


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both presets through the real command at once (separate processes and run directories), then one table2."""
    data, runs = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("runs")
    write_idx_dir(data, gz=True, n_train=5100, n_test=100)  # the official split keeps 5,000 for validation
    lenet300, lenet5 = run_clis(
        ["run", "lenet300-fashion-mnist", "--runs-dir", runs, "--quiet", "--seeds", "0", "1", "--set",
         f"data.root={data}", *[a for s in SMOKE for a in ("--set", s)]],
        ["run", "lenet5-fashion-mnist", "--runs-dir", runs, "--quiet", "--set", f"data.root={data}",
         *[a for s in CONV_SMOKE for a in ("--set", s)]])
    assert lenet300.returncode == 0, lenet300.stderr
    assert lenet5.returncode == 0, lenet5.stderr
    [table] = run_clis(["table2", "--runs-dir", runs, "--json"])
    assert table.returncode == 0, table.stderr
    return runs, json.loads(table.stdout)


def test_fashion_mnist_preset_runs_and_fills_its_table2_row(runs, preset="lenet300-fashion-mnist"):
    root, rows = runs
    # per seed: dense, the level-1 ticket, its two baselines
    assert len(list(root.glob(f"{preset}-*/**/summary.json"))) == 2 * 4
    (row,) = [r for r in rows if r["preset"] == preset]
    assert "stand-in" in row["paper"]["dataset"] and "stand-in" in row["paper"]["note"]
    (ours,) = row["ours"]
    assert ours["dense"]["seeds"] == 2 and ours["ticket_level"] == 1 and ours["gain"]["seeds"] == 2
    assert ours["gain"]["low"] <= ours["gain"]["mean"] <= ours["gain"]["high"]
    assert not ours["changed"] or set(ours["changed"]) <= {f"{k.split('=')[0]}" for k in SMOKE}


def test_the_convolutional_stand_in_runs_and_has_its_row(runs):
    """LeNet-5 on the same files, one seed (the paired column is the test above's): its row names the preset."""
    (row,) = [r for r in runs[1] if r["preset"] == "lenet5-fashion-mnist"]
    assert row["paper"]["network"] == "LeNet-5" and "stand-in" in row["paper"]["dataset"]
    (ours,) = row["ours"]
    assert ours["dense"]["seeds"] == 1 and ours["ticket_level"] == 1
