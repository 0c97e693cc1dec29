"""Resumable group checkpoints: a batched group's copies always resume at the same step.

Checkpoints of a group are written in two phases (every copy's `checkpoint.next.safetensors`, then renames), so a run
killed at any moment resumes with all copies at the same step, in the same group, and ends with the same numbers:
`reconcile` finishes or undoes an interrupted one before the group resumes."""

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open

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
    complete = all((s / NEXT).exists() or checkpoint_step(s / "checkpoint.safetensors") == step for s in stages)
    for s in pending:
        if complete:
            os.replace(s / NEXT, s / "checkpoint.safetensors")
        else:
            (s / NEXT).unlink()


def resume_step(stage: Path, start: int) -> int:
    """The step a stage resumes from: its checkpoint's, else its plan's `start`."""
    step = checkpoint_step(stage / "checkpoint.safetensors")
    return start if step is None else step


class CopyState:
    """What `store.save_checkpoint` needs of an optimizer, for copy k of the batched one: the state of its n
    parameters (indices k*n .. k*n+n-1), numbered as its own optimizer numbers them."""

    def __init__(self, optimizer: torch.optim.Optimizer, k: int, n: int, with_state: bool = True):
        self.optimizer, self.k, self.n, self.with_state = optimizer, k, n, with_state

    def state_dict(self) -> dict:
        state = self.optimizer.state_dict()["state"] if self.with_state else {}
        return {"state": {j: state[self.k * self.n + j] for j in range(self.n) if self.k * self.n + j in state}}
