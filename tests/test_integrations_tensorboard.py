"""Metric rows as TensorBoard scalars, read back from the event files with TensorBoard's own reader."""

import math
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.fake_runs import EVAL_EVERY, STEPS, write_fake_run
from ticketlab import TicketlabError
from ticketlab.engine.store import read_metrics
from ticketlab.integrations.tensorboard import TensorBoardSink, tensorboard_from_run


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """{"<stage>/<field>": [(step, value), ...]} over the TensorBoard runs (one per stage) under log_dir."""
    found = {}
    for run in sorted({p.parent for p in Path(log_dir).rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(run), size_guidance={"scalars": 0})  # 0: keep every point
        events.Reload()
        stage = run.relative_to(log_dir).as_posix()
        found |= {f"{stage}/{tag}": [(e.step, e.value) for e in events.Scalars(tag)]
                  for tag in events.Tags()["scalars"]}
    return found


def test_every_numeric_field_becomes_a_scalar_at_its_step(tmp_path):
    rows = [{"step": 0, "epoch": 0.0, "train_loss": None, "val_loss": 1.5, "val_acc": 0.25, "lr": 0.1, "wall": 0.0},
            {"step": 50, "epoch": 1.0, "train_loss": 0.75, "val_loss": 0.5, "val_acc": 0.875, "lr": 0.05,
             "wall": 2.5, "diverged": False, "note": "text is not a scalar"},
            {"step": 60, "epoch": 1.2, "train_loss": math.nan, "val_loss": math.inf, "val_acc": 0.125}]
    with TensorBoardSink(tmp_path / "tb") as sink:
        for row in rows:
            sink("level_01", row)
        sink("level_01/baselines/random_pruning", {"step": 7, "test_acc": 0.5})
    got = scalars(tmp_path / "tb")
    assert set(got) == {f"level_01/{f}" for f in ("epoch", "train_loss", "val_loss", "val_acc", "lr", "wall")} | {
        "level_01/baselines/random_pruning/test_acc"}
    assert got["level_01/val_acc"] == [(0, 0.25), (50, 0.875), (60, 0.125)]
    assert got["level_01/lr"] == [(0, pytest.approx(0.1)), (50, pytest.approx(0.05))]  # stored as float32
    assert [s for s, _ in got["level_01/train_loss"]] == [50, 60] and math.isnan(got["level_01/train_loss"][1][1])
    assert got["level_01/val_loss"][-1] == (60, math.inf)
    assert got["level_01/baselines/random_pruning/test_acc"] == [(7, 0.5)]


@pytest.mark.parametrize("row, needle", [
    ({"val_loss": 0.5}, "needs an integer 'step' >= 0, got None"),
    ({"step": 1.5, "val_loss": 0.5}, "got 1.5"),
    ({"step": -1}, "got -1"),
    ([("step", 1)], "got a list"),
])
def test_a_row_without_a_step_is_refused(tmp_path, row, needle):
    with TensorBoardSink(tmp_path / "tb") as sink, pytest.raises(TicketlabError, match=needle):
        sink("level_00", row)


def test_a_resumed_stage_shows_each_step_once(tmp_path):
    """A resumed stage rewrites its rows after its checkpoint: the new writer's rows replace the old ones from its
    first step on, in that stage only."""
    with TensorBoardSink(tmp_path / "tb") as sink:
        for step in (0, 10, 20, 30):
            sink("level_01", {"step": step, "val_acc": step / 100})
        sink("level_00", {"step": 40, "val_acc": 0.5})
    with TensorBoardSink(tmp_path / "tb") as resumed:
        for step in (20, 30, 40):
            resumed("level_01", {"step": step, "val_acc": step / 1000})
    got = scalars(tmp_path / "tb")
    assert got["level_01/val_acc"] == [(0, 0.0), (10, pytest.approx(0.1)), (20, pytest.approx(0.02)),
                                       (30, pytest.approx(0.03)), (40, pytest.approx(0.04))]
    assert got["level_00/val_acc"] == [(40, 0.5)]


@pytest.mark.parametrize("stage", ["", "../outside", "/abs"])
def test_a_stage_outside_the_log_directory_is_refused(tmp_path, stage):
    with TensorBoardSink(tmp_path / "tb") as sink, pytest.raises(TicketlabError, match="not a relative path"):
        sink(stage, {"step": 0, "val_acc": 0.5})


def test_a_run_directory_converts_stage_by_stage(tmp_path):
    run = write_fake_run(tmp_path / "runs", levels=1, baselines=("random_pruning",))
    assert tensorboard_from_run(run, tmp_path / "tb") == 3 * (STEPS // EVAL_EVERY + 1)
    got = scalars(tmp_path / "tb")
    expected = read_metrics(run / "level_01" / "baselines" / "random_pruning" / "metrics.jsonl")
    assert got["level_01/baselines/random_pruning/test_acc"] == [
        (row["step"], pytest.approx(row["test_acc"])) for row in expected]
    assert {tag.rsplit("/", 1)[0] for tag in got} == {"level_00", "level_01", "level_01/baselines/random_pruning"}
    assert tensorboard_from_run(run, tmp_path / "tb") == 3 * (STEPS // EVAL_EVERY + 1)  # converted again: once each
    assert scalars(tmp_path / "tb") == got


def test_a_directory_without_metrics_is_refused(tmp_path):
    with pytest.raises(TicketlabError, match="holds no metrics.jsonl"):
        tensorboard_from_run(tmp_path, tmp_path / "tb")


def test_run_with_tensorboard_writes_every_stage_of_every_run(tmp_path):
    from .conftest import run_cli

    fast = ["train.steps=12it", "train.eval_every=6it", "lottery.levels=1"]
    done = run_cli("run", "mlp-digits", "--quiet", "--seeds", "0", "1", "--runs-dir", tmp_path / "runs",
                   "--tensorboard", tmp_path / "tb", *[a for s in fast for a in ("--set", s)])
    assert done.returncode == 0, done.stderr
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == runs  # a directory per run directory
    got = scalars(tmp_path / "tb" / runs[0])
    assert {"level_00/val_acc", "level_01/test_loss", "level_01/baselines/random_reinit/val_acc"} <= set(got)
    assert [step for step, _ in got["level_01/val_acc"]] == [0, 6, 12]
