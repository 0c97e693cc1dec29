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


def readable_step(path: Path) -> int | None:
    """The step a checkpoint claims, or None when it is absent or unreadable (a torn or corrupt file: `vet` judges
    a kept one fully later)."""
    try:
        step = checkpoint_step(path)
    except Exception:  # noqa: BLE001 - safetensors, JSON and key errors alike: the file cannot say its step
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def reconcile(stages: list[Path]) -> None:
    """Finish or undo an interrupted two-phase checkpoint: promote the new files if all were written and agree on
    their step, else drop them (a corrupt next file counts as a torn write)."""
    pending = [s for s in stages if (s / NEXT).exists()]
    if not pending:
        return
    steps = {readable_step(s / NEXT) if (s / NEXT).exists() else readable_step(s / CHECKPOINT) for s in stages}
    complete = len(steps) == 1 and None not in steps
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
