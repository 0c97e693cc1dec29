"""The lock around building one kernel. Ours is an flock on `ticketlab.lock` in the kernel's build directory: the
operating system releases it when its holder dies, so a killed build never blocks the next one. torch's loader
takes a lock file of its own (`lock`), which a killed build leaves behind and for which torch then waits forever
(checked: it does); only holders of our lock build in this directory, so once we hold it any such file is stale,
and it is removed with a message."""

import contextlib
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: torch's lock alone (our kernels' flags are for GCC/Clang anyway)
    fcntl = None

LOCK = "ticketlab.lock"
TORCH_LOCK = "lock"  # torch.utils.cpp_extension's FileBaton
# Seconds of waiting not worth a word: a process that only loads an up-to-date kernel holds the lock about a second
# (two DDP ranks starting together meet there), a build holds it for minutes.
QUIET_WAIT = 3.0


@contextlib.contextmanager
def build_lock(directory: Path, what: str):
    """Hold the build lock of `directory`, waiting (said once) while another process builds the `what` there."""
    with open(directory / LOCK, "a") as handle:
        acquire(handle, what, directory)
        try:
            clear_stale_torch_lock(directory, what)
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def acquire(handle, what: str, directory: Path) -> None:
    if fcntl is None:  # pragma: no cover
        return
    deadline = time.monotonic() + QUIET_WAIT
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    print(f"ticketlab: waiting for another process building the {what} in {directory}", file=sys.stderr)
    fcntl.flock(handle, fcntl.LOCK_EX)  # released by the holder, or by its death


def clear_stale_torch_lock(directory: Path, what: str) -> None:
    """Remove torch's lock file, left by a build killed midway (we hold our lock: nobody else is building)."""
    lock = directory / TORCH_LOCK
    if fcntl is not None and lock.exists():
        lock.unlink(missing_ok=True)
        print(f"ticketlab: cleared a stale build lock of the {what} (left by a killed build): {lock}",
              file=sys.stderr)
