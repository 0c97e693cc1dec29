"""Run directories (layout: docs/run-directory.md), resumable checkpoints, and weight files.

A stage (one training of IMP at a level, or of a baseline) is finished when its summary.json exists and is sound
(`is_done`); everything
a stage writes before that is either complete or ignored, so a run killed at any moment resumes cleanly."""

import contextlib
import json
import math
import os
import socket
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from torch import nn

from ticketlab.core.files import (
    file_errors,
    load_tensors,
    read_json,
    read_text,
    save_tensors,
    write_bytes_atomic,
    write_json_atomic,
)
from ticketlab.core.fingerprint import Fingerprint
from ticketlab.core.model_state import load_state
from ticketlab.engine.checkpoint import load_checkpoint as load_checkpoint  # re-exported: the stage's checkpoint
from ticketlab.engine.checkpoint import save_checkpoint as save_checkpoint
from ticketlab.engine.config import Config, from_dict
from ticketlab.engine.identity import record, refusal
from ticketlab.errors import TicketlabError


class RunStore:
    """Paths of one run directory; `open` refuses a directory made with another config or model."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def open(cls, runs_dir: str | Path, cfg: Config, preset: str | None = None, *,
             fingerprint: Fingerprint | None = None) -> "RunStore":
        """The run directory of `cfg`, created with its config.json, or an existing one checked against `cfg` and the
        model's `fingerprint` (None: the model is not checked nor recorded). An existing config.json is never
        rewritten: directories written before fingerprints existed stay as they are."""
        store = cls(Path(runs_dir) / cfg.run_name())
        if store.config_path.exists():
            why = refusal(store.root, read_json(store.config_path), cfg, fingerprint)
            if why:
                raise TicketlabError(why)
        else:
            write_json_atomic(store.config_path, record(cfg, preset, fingerprint))
        return store

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    def config(self) -> Config:
        return from_dict(read_json(self.config_path)["config"])

    @property
    def init_path(self) -> Path:
        return self.root / "init.safetensors"

    @property
    def rewind_path(self) -> Path:
        return self.root / "rewind.safetensors"

    def level(self, level: int) -> Path:
        return self.root / f"level_{level:02d}"

    def baseline(self, level: int, name: str) -> Path:
        return self.level(level) / "baselines" / name

    def levels(self) -> list[int]:
        return sorted(int(p.name[6:]) for p in self.root.glob("level_*") if p.name[6:].isdigit())


# what every stage summary holds, and the numbers a "done" one adds (engine/stage_files.py writes them)
SUMMARY_KEYS = {"level": int, "kind": str, "status": str}
NUMBERS = ("density", "steps", "best_val_acc", "early_stop_test_acc", "early_stop_step", "final_test_acc")


def summary_problem(summary) -> str | None:
    """What is wrong with a stage's summary (not a mapping, a key missing or of the wrong type), or None if sound.
    Numbers, when present, must be finite (density in 0..1); a "done" summary must have them all, another (e.g.
    "diverged") may leave the statistics None."""
    if not isinstance(summary, dict):
        return f"a {type(summary).__name__}, not a mapping"
    for key, kind in SUMMARY_KEYS.items():
        if not isinstance(summary.get(key), kind) or isinstance(summary.get(key), bool):
            return f"{key!r} is {summary.get(key)!r}, not a {kind.__name__}" if key in summary else f"no {key!r}"
    done = summary["status"] == "done"
    for key in NUMBERS:
        value = summary.get(key)
        if key not in summary and done:
            return f"no {key!r}"
        if value is None and not done and key != "density":  # a diverged stage may have no finite statistics
            continue
        if key in summary and not (isinstance(value, int | float) and not isinstance(value, bool)
                                   and math.isfinite(value)):
            return f"{key!r} is {value!r}, not a number"
    if "density" in summary and not 0.0 <= summary["density"] <= 1.0:
        return f"'density' {summary['density']} is outside 0..1"
    return None


def read_summary(stage: Path) -> dict | None:
    """A stage's summary.json, None while it trains; a corrupt or inconsistent one raises TicketlabError."""
    path = stage / "summary.json"
    if not path.exists():
        return None
    try:
        summary = read_json(path)
    except TicketlabError as e:
        raise TicketlabError(f"{e}; the stage is not finished: run it again to retrain it") from None
    problem = summary_problem(summary)
    if problem:
        raise TicketlabError(f"corrupt summary {path}: {problem}; run the stage again to retrain it (its summary is "
                             "rewritten)")
    return summary


def is_done(stage: Path) -> bool:
    """Whether the stage finished: its summary.json exists and is sound. A corrupt one does not count (the stage
    trains again and rewrites it); it is said once, when the stage is about to train."""
    try:
        return read_summary(stage) is not None
    except TicketlabError as e:
        if str(stage) not in _said:
            _said.add(str(stage))
            print(f"ticketlab: {e}", file=sys.stderr, flush=True)
        return False


_said: set[str] = set()


def save_weights(path: Path, model: nn.Module) -> None:
    save_tensors(path, model.state_dict())


def load_weights(path: Path, model: nn.Module) -> nn.Module:
    """Load a state dict saved by `save_weights` into `model` (strict: names and shapes must match)."""
    return load_state(model, load_tensors(path)[0], path)


def read_metrics(path: Path, upto_step: int | None = None) -> list[dict]:
    """The rows of metrics.jsonl, for training on resume and for the report (which may read a live run).

    Blank lines are skipped, and so is an unterminated last line: a writer killed, or still busy, mid-append. With
    `upto_step` (resume), rows after the checkpoint's step are dropped. Any other line that is not JSON is
    corruption, not a torn write, and raises rather than silently losing the rows after it."""
    if not path.is_file():
        return []
    text = read_text(path)
    lines = text.splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not text.endswith("\n"):
                break
            raise TicketlabError(f"corrupt metrics file {path}: line {i + 1} is not JSON; repair it or delete the "
                                 "stage's directory to train it again") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise TicketlabError(f"corrupt metrics file {path}: line {i + 1} is not a row with a step")
        if upto_step is not None and row["step"] > upto_step:
            break
        rows.append(row)
    return rows


def write_metrics(path: Path, rows: list[dict]) -> None:
    write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def append_metrics(path: Path, row: dict) -> None:
    """Append one row; a write that fails (full disk) is cut back off, so no torn line is left behind."""
    with file_errors(path, "append to"), open(path, "ab") as f:
        start = f.tell()
        try:
            f.write((json.dumps(row) + "\n").encode())
            f.flush()
        except OSError:
            with contextlib.suppress(OSError):
                f.truncate(start)
            raise


# -- who writes a run directory -------------------------------------------------------------------------------------
@contextmanager
def run_lock(root: str | Path, wait: bool = False, what: str = "run directory"):
    """Hold `<root>/.lock` (fcntl.flock) while writing under `root`, so two writers never interleave: the second one
    waits (`wait`) or is refused with one line naming the holder. The kernel frees the lock when its holder exits, even
    by kill -9. Needs a filesystem with working flock (local disks; NFSv4 and most cluster filesystems)."""
    import fcntl  # POSIX only; imported here so the rest of the store works everywhere

    root = Path(root)
    with file_errors(root / ".lock", "lock"):
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise TicketlabError(f"{what} {root} is in use by {lock_holder(fd)}; wait for it or stop it") from None
            print(f"waiting for {what} {root}, in use by {lock_holder(fd)}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def run_locks(roots, wait: bool = False):
    """`run_lock` on several run directories, always taken in sorted order so two holders cannot deadlock."""
    with ExitStack() as stack:
        for root in sorted({Path(r) for r in roots}):
            stack.enter_context(run_lock(root, wait))
        yield


def lock_holder(fd: int) -> str:
    """'pid N on HOST (since ...)' as the holder wrote it; the content is informative only, the flock is the lock."""
    try:
        info = json.loads(os.pread(fd, 4096, 0))
        return f"pid {info['pid']} on {info['host']} (since {info['since']})"
    except (ValueError, KeyError, TypeError, OSError):
        return "another process"
