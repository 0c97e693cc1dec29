"""The thread policy: `train.threads` / `--threads N`, set at the edge, outside the run's identity, recorded in every
stage's summary.json."""

import json

import pytest
import torch

from ticketlab.engine.config import Config
from ticketlab.engine.presets import build_config
from ticketlab.engine.threads import apply_threads, threads_override
from ticketlab.errors import TicketlabError

from .conftest import assert_user_error, main_in_process, run_cli


def test_threads_default_to_torchs_and_never_change_the_hash():
    assert Config().train.threads == 0
    base = build_config("lenet300-mnist-mini")
    for n in (1, 2, 64):
        pinned = build_config("lenet300-mnist-mini", overrides=[f"train.threads={n}"])
        assert pinned.train.threads == n and pinned.hash() == base.hash()
        assert "threads" not in pinned.non_default().get("train", {})


@pytest.mark.parametrize("value", ["-1", "1.5", "many"])
def test_bad_thread_counts_are_user_errors(value):
    with pytest.raises(TicketlabError, match="train.threads"):
        build_config("lenet300-mnist-mini", overrides=[f"train.threads={value}"])
    if value == "-1":
        with pytest.raises(TicketlabError, match="--threads must be 0"):
            threads_override(-1)


def test_apply_threads_sets_torch_and_zero_keeps_its_default():
    before = torch.get_num_threads()
    try:
        assert apply_threads(0) == before
        assert apply_threads(2) == 2 == torch.get_num_threads()
        with pytest.raises(TicketlabError, match="threads must be"):
            apply_threads(-3)
    finally:
        torch.set_num_threads(before)


def test_run_records_its_threads_and_resumes_under_another_count(tmp_path, capsys):
    common = ["run", "mlp-digits", "--runs-dir", str(tmp_path), "--quiet", "--set", "train.steps=4it",
              "--set", "train.eval_every=4it", "--set", "lottery.levels=1", "--set", "lottery.baselines=[]"]
    # the message through `run`'s main() in this process (its real command line's errors: test_lottery.py)
    assert_user_error(main_in_process(capsys, *common, "--threads", "-2"), "--threads", "-2")
    result = run_cli(*common, "--threads", "2")
    assert result.returncode == 0, result.stderr
    (run,) = tmp_path.glob("mlp-digits-*")
    assert run.name == build_config("mlp-digits", overrides=[c for c in common[5:] if c != "--set"]).run_name()
    summaries = sorted(run.rglob("summary.json"))
    assert len(summaries) == 2 and all(json.loads(p.read_text())["threads"] == 2 for p in summaries)
    again = run_cli(*common, "--threads", "1")  # another count: the same run, already finished
    assert again.returncode == 0, again.stderr
    assert sorted(tmp_path.glob("mlp-digits-*")) == [run]
