"""Resumable group checkpoints: a batched group's copies always resume at the same step.

Checkpoints of a group are written in two phases (every copy's `checkpoint.next.safetensors`, then renames), so a run
killed at any moment resumes with all copies at the same step, in the same group, and ends with the same numbers:
`reconcile` finishes or undoes an interrupted one before the group resumes."""

import json
import os
from collections.abc import Callable
from pathlib import Path

from safetensors import safe_open

from ticketlab.engine.bookkeeping import CHECKPOINT

NEXT = "checkpoint.next.safetensors"


def checkpoint_step(path: Path) -> int | None:
    if not path.exists():
        return None
    with safe_open(path, "pt") as f:
        return json.loads(f.metadata()["extra"])["step"]


def reconcile(stages: list[Path]) -> None:
    """Finish or undo an interrupted two-phase checkpoint: promote the new files if all were written, else drop them."""
    pending = [s for s in stages if (s / NEXT).exists()]
    if not pending:
        return
    step = checkpoint_step(pending[0] / NEXT)
    complete = all((s / NEXT).exists() or checkpoint_step(s / CHECKPOINT) == step for s in stages)
    for s in pending:
        if complete:
            os.replace(s / NEXT, s / CHECKPOINT)
        else:
            (s / NEXT).unlink()


def resume_step(stage: Path, start: int) -> int:
    """The step a stage resumes from: its checkpoint's, else its plan's `start`."""
    step = checkpoint_step(stage / CHECKPOINT)
    return start if step is None else step


class CopyState:
    """What `store.save_checkpoint` needs of an optimizer, for one copy of the batched one: `state()` gives the
    copy's state, numbered and shaped as its own optimizer's (slots.py)."""

    def __init__(self, state: Callable[[], dict]):
        self.state = state

    def state_dict(self) -> dict:
        return {"state": self.state()}
