"""The engine's accelerator seam: the pure-torch path and the kernels give one stage the same bits; `--no-accel`
selects the pure-torch path and records that it trains one stage at a time."""

import json

import pytest

from ticketlab.accel import KERNELS, PURE_TORCH, select
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.presets import build_config

from .conftest import assert_user_error, comparable, main_in_process, run_cli

FAST = ["train.steps=40it", "train.eval_every=20it", "train.checkpoint_every=20it", "lottery.levels=1",
        "lottery.baselines=[]", "train.batch_tickets=1", "train.optimizer=adam", "train.lr=0.001"]


def test_select_picks_kernels_or_the_pure_torch_path():
    assert select() is KERNELS and select(enabled=False) is PURE_TORCH
    assert not PURE_TORCH.batchable(None, (64,))
    with pytest.raises(NotImplementedError):
        PURE_TORCH.train_batched([], None)


def test_one_stage_trains_to_the_same_bits_with_and_without_kernels(tmp_path, one_thread):
    """KeptOptimizer (kept entries only on one thread) against the configured optimizer plus gradient masking."""
    cfg = build_config("mlp-digits", overrides=FAST)
    runs = {}
    for accelerator in (KERNELS, PURE_TORCH):
        root = tmp_path / accelerator.name
        runs[accelerator.name] = Lottery.open(cfg, root, accelerator=accelerator).run().root
    assert comparable(runs["kernels"]) == comparable(runs["torch"])


def test_no_accel_runs_one_stage_at_a_time_and_refuses_batching(tmp_path, capsys):
    common = ["run", "mlp-digits", "--runs-dir", str(tmp_path), "--quiet", "--set", "train.steps=10it",
              "--set", "train.eval_every=10it", "--set", "lottery.levels=1"]
    # the refusal through `run`'s main() in this process (its real command line's errors: test_lottery.py)
    assert_user_error(main_in_process(capsys, *common, "--no-accel", "--batch-tickets", "4"), "--no-accel",
                      "--batch-tickets 4")
    assert not any(tmp_path.iterdir())  # refused before anything was written
    result = run_cli(*common, "--no-accel")
    assert result.returncode == 0, result.stderr
    (config,) = tmp_path.glob("*/config.json")
    assert json.loads(config.read_text())["config"]["train"]["batch_tickets"] == 1
