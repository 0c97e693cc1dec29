"""store.read_metrics: what a killed writer leaves is skipped, what corruption leaves is refused."""

import json

import pytest

from ticketlab.engine.store import read_metrics
from ticketlab.errors import TicketlabError


def write_rows(path, steps, tail=""):
    path.write_text("".join(json.dumps({"step": s, "val_acc": s / 10}) + "\n" for s in steps) + tail)


def test_torn_last_line_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_rows(path, [0, 10, 20], tail='\n{"step": 30, "val')
    assert [r["step"] for r in read_metrics(path)] == [0, 10, 20]


def test_resume_keeps_rows_up_to_the_checkpoint_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_rows(path, [0, 10, 20, 30])
    assert [r["step"] for r in read_metrics(path, upto_step=20)] == [0, 10, 20]
    assert read_metrics(path, upto_step=-1) == []
    assert read_metrics(tmp_path / "absent.jsonl") == []


def test_a_corrupt_line_before_the_end_is_refused(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\nnot json\n{"step": 10}\n')
    with pytest.raises(TicketlabError, match="line 2 is not JSON"):
        read_metrics(path)
