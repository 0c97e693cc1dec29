"""Corrupt checkpoints of a batched group (accel/batching/checkpoints.py): a corrupt `checkpoint.next.safetensors`
is a torn write, dropped before the group resumes; a corrupt kept checkpoint is moved aside by `vet` and that copy
restarts. Never a traceback, and the copies end as their uninterrupted runs alone."""

import json

import pytest
import torch

from ticketlab.accel.batching import train_batched
from ticketlab.accel.batching.checkpoints import NEXT, reconcile
from ticketlab.core.files import load_tensors, save_tensors
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.store import save_checkpoint

from .test_batched import separate, tickets_for, without_wall

CHECKPOINT = "checkpoint.safetensors"
EXTRA = {"step": 8, "loss_sum": 1.0, "loss_count": 8, "wall": 0.0}


def corrupt(kind: str, path, model, opt) -> None:
    save_checkpoint(path, model, opt, EXTRA)
    data = path.read_bytes()
    if kind == "no-extra":
        save_tensors(path, {"a": torch.zeros(2)}, {"optimizer": "{}"})
    elif kind == "extra-not-json":
        save_tensors(path, {"a": torch.zeros(2)}, {"extra": "{", "optimizer": "{}"})
    elif kind == "step-text":
        save_tensors(path, {"a": torch.zeros(2)}, {"extra": json.dumps({**EXTRA, "step": "8"}), "optimizer": "{}"})
    else:
        path.write_bytes({"empty": b"", "truncated": data[:7], "garbage": b"\xff" * 64}[kind])


def step_of(path) -> int:
    return json.loads(load_tensors(path)[1]["extra"])["step"]


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "no-extra", "extra-not-json", "step-text"])
def test_a_corrupt_next_file_is_dropped_like_a_torn_write(tmp_path, kind):
    model, stages = torch.nn.Linear(2, 2), [tmp_path / f"s{i}" for i in range(3)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for s in stages:
        s.mkdir()
        save_checkpoint(s / CHECKPOINT, model, opt, {**EXTRA, "step": 4})
        save_checkpoint(s / NEXT, model, opt, EXTRA)
    corrupt(kind, stages[1] / NEXT, model, opt)  # phase 1 "completed" with one bad file
    reconcile(stages)
    assert not any((s / NEXT).exists() for s in stages)
    assert [step_of(s / CHECKPOINT) for s in stages] == [4, 4, 4]


def test_a_corrupt_kept_checkpoint_beside_next_files_does_not_stop_reconcile(tmp_path):
    model, stages = torch.nn.Linear(2, 2), [tmp_path / f"s{i}" for i in range(2)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for s in stages:
        s.mkdir()
    save_checkpoint(stages[0] / NEXT, model, opt, EXTRA)
    (stages[1] / CHECKPOINT).write_bytes(b"\x10\0\0\0")
    reconcile(stages)  # cannot tell whether phase 1 was complete: undone
    assert not (stages[0] / NEXT).exists() and (stages[1] / CHECKPOINT).read_bytes() == b"\x10\0\0\0"


def test_a_group_with_a_corrupt_next_file_ends_as_its_copies_alone(tmp_path, one_thread, capfd):  # noqa: F811
    cfg = TrainConfig(steps="8it", optimizer="adam", lr=1e-3, eval_every="4it", checkpoint_every="4it")
    tickets = tickets_for("mlp", tmp_path, cfg, k=2)
    expected = separate(tickets, cfg, tmp_path)
    for t in tickets:
        t.stage.mkdir()
    (tickets[0].stage / NEXT).write_bytes(b"\xff" * 16)
    (tickets[1].stage / CHECKPOINT).write_bytes(b"")  # and a corrupt kept checkpoint: moved aside, said once
    rows = train_batched(tickets, cfg)
    assert capfd.readouterr().err.count("corrupt checkpoint") == 1
    assert (tickets[1].stage / "checkpoint.corrupt-1.safetensors").is_file()
    for t, r, (rows_alone, weights_alone) in zip(tickets, rows, expected, strict=True):
        assert without_wall(r) == without_wall(rows_alone)
        assert all(torch.equal(p, weights_alone[n]) for n, p in t.model.named_parameters())
