"""The small cuts of issue 15: `ticketlab --version`; `ticketlab run` ends with the results table `demo` prints (mean
± std over seeds); `print(count(model))` is the per-layer table. (`--set train.steps=300` suggesting '300it' and list
values hinting at `[a, b]` are tested in test_torture_config.py; built-in names that cannot be replaced in
test_extension_points.py and, through a plugin, in test_plugins.py.)"""

import importlib.metadata
import re

import pytest
import torch
from torch import nn

from ticketlab import Masks, PruneSpec, cli, count, prune
from ticketlab.core.counting import format_counts


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"ticketlab {importlib.metadata.version('ticketlab')}\n"


def test_run_ends_with_the_results_table_mean_and_std_over_seeds(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["run", "mlp-digits", "--seeds", "0", "1", "--quiet", "--runs-dir", "runs", "--set", "train.steps=20it",
            "--set", "train.eval_every=10it", "--set", "lottery.levels=2",
            "--set", "lottery.baselines=[random_pruning]"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    finished = re.findall(r"run finished: (\S+)", out)
    assert len(finished) == 2
    table = out[out.index("mlp on digits"):]
    assert table.splitlines()[0] == "mlp on digits (preset mlp-digits) — 2 seeds"
    rows = {line.split("  ")[0]: line for line in table.splitlines()[2:] if "(level" in line}
    best = int(re.search(r"best IMP ticket \(level (\d)\)", table).group(1))
    expected = {"dense (level 0)", f"best IMP ticket (level {best})", f"random pruning (level {best})"}
    if best != 2:  # the sparsest level gets its own rows when it is not the best
        expected |= {"sparsest IMP ticket (level 2)", "random pruning (level 2)"}
    assert set(rows) == expected
    assert all(" ± " in row and row.endswith("2/2") for row in rows.values())  # mean ± std over the 2 seeds
    assert out.rstrip().endswith(f"report with figures: ticketlab report {' '.join(finished)}")


def test_print_count_is_the_table_not_a_dataclass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    masks = prune(model, Masks.ones(model), PruneSpec(rate=0.5))
    counts = count(model, masks, torch.randn(2, 6))
    text = str(counts)
    assert text == format_counts(counts)  # the one render code, shared with `ticketlab count`
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["layer", "type", "params", "weights"]
    assert lines[2].split()[:3] == ["0", "Linear", "35"] and "kept 50.0% (sparsity 50.0%)" in lines[2]
    assert any(line.startswith("total") for line in lines)
    assert f"{counts}" == text and repr(counts).startswith("Counts(layers=[LayerCount(")
