"""Table 1 reproduction and the `count` / `table1` commands."""

import json
import subprocess
import sys

import pytest
import torch

from ticketlab.core.masks import Masks
from ticketlab.models import build_model
from ticketlab.paper.table1 import format_table1

from .conftest import main_in_process, run_clis


def cli(*args):
    return subprocess.run([sys.executable, "-m", "ticketlab.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def outputs():
    """`table1 --json` and `table1` through the real command, started together, once for the module."""
    return dict(zip(["json", "text"], run_clis(["table1", "--json"], ["table1"]), strict=True))


@pytest.fixture(scope="module")
def result(outputs):
    """The figures of `table1 --json`."""
    assert outputs["json"].returncode == 0, outputs["json"].stderr
    return json.loads(outputs["json"].stdout)


def ours(result, model):
    return next(e["ours"] for e in result["han"] + result["quoted_only"] if e["model"] == model)


def test_alexnet_and_vgg16_reproduce_han(result):
    alexnet, vgg = ours(result, "alexnet"), ours(result, "vgg16")
    assert alexnet["params_before"] == 60_965_224 and vgg["params_before"] == 138_357_544
    assert alexnet["params_after"] == pytest.approx(6.80e6, rel=0.01)
    assert vgg["params_after"] == pytest.approx(10.53e6, rel=0.01)
    assert alexnet["param_reduction"] == pytest.approx(9.0, abs=0.1)
    assert vgg["param_reduction"] == pytest.approx(13.1, abs=0.1)
    assert alexnet["mac_reduction_weight"] == pytest.approx(2.4, abs=0.05)
    assert vgg["mac_reduction_weight"] == pytest.approx(3.1, abs=0.05)
    assert alexnet["mac_reduction_weight_act"] == pytest.approx(3.3, abs=0.05)
    assert vgg["mac_reduction_weight_act"] == pytest.approx(4.85, abs=0.05)


def test_lenets_and_lottery_weights(result):
    assert ours(result, "lenet300")["prunable_weights"] == 266_200
    assert ours(result, "lenet5")["prunable_weights"] == 430_500
    weights = {r["model"]: r for r in result["lottery_weights"]}
    assert weights["lenet300"]["prunable_weights"] == 266_200
    assert [weights[m]["prunable_weights"] for m in ("conv2", "conv4", "conv6")] == [4_300_992, 2_425_024, 2_261_184]
    assert [m for m, r in weights.items() if r["discrepancy"]] == ["conv6"]  # the paper's 1.7M


def test_quoted_rows_are_labelled_and_matched_by_fraction(result):
    for entry in result["quoted_only"]:
        assert entry["quoted"][0]["source"] == "talk"
        measured = entry["ours"]
        assert measured["params_after"] / measured["params_before"] == pytest.approx(entry["kept_fraction"], rel=1e-3)
    text = format_table1(result)
    assert "quoted: talk" in text and "DISCREPANCY" in text and "1506.02626" in text


def test_cli_table1_text(result, outputs):
    text = outputs["text"]
    assert text.returncode == 0, text.stderr
    assert text.stdout == format_table1(result) + "\n"  # the same figures as --json
    assert "AlexNet" in text.stdout and "13.1x" in text.stdout and "Conv-6" in text.stdout


def test_quoted_only_rows_without_trained_weights_have_no_activation_figure(result):
    assert all(e["ours"]["mac_reduction_weight_act"] is None for e in result["quoted_only"])
    assert result["han"][0]["quoted"][0] == {"network": "AlexNet", "source": "talk", "params_before": "61M",
                                             "params_after": "6.7M", "param_reduction": "9x", "mac_reduction": "3x"}


def test_cli_count(tmp_path):
    masks = Masks.ones(build_model("lenet300"))
    masks = Masks({**masks, "fc2.weight": torch.arange(30_000).reshape(100, 300) < 3_000})  # keep 10% of fc2
    masks.save(tmp_path / "m.safetensors")
    out, pruned, masked = run_clis(["count", "lenet300"],
                                   ["count", "lenet300", "--density-table", "lenet300", "--json"],
                                   ["count", "lenet300", "--masks", tmp_path / "m.safetensors", "--json"])
    assert out.returncode == pruned.returncode == masked.returncode == 0, out.stderr + pruned.stderr + masked.stderr
    assert "fc1" in out.stdout and "266,200 prunable" in out.stdout
    pruned = json.loads(pruned.stdout)
    assert pruned["total"]["prunable_kept"] == round(0.08 * 235_200) + round(0.09 * 30_000) + round(0.26 * 1_000)
    data = json.loads(masked.stdout)
    fc2 = next(r for r in data["layers"] if r["name"] == "fc2")
    assert fc2["prunable_kept"] == 3_000 and fc2["macs_weight_sparse"] == 3_000 and fc2["macs_dense"] == 30_000


@pytest.mark.parametrize("args", [
    ["count", "lenet3000"],
    ["count", "lenet300", "--batch", "0"],
    ["count", "lenet300", "--density-table", "alexnet"],
    ["count", "lenet300", "--masks", "/nonexistent/masks.safetensors"],
])
def test_cli_bad_input_exits_2_with_one_line(args, capsys):
    # The first through the real command line, the others through its main() in this process.
    out = cli(*args) if args == ["count", "lenet3000"] else main_in_process(capsys, *args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "error" in out.stderr
