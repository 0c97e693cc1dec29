"""One rank's side of a launch: die with the launcher, join the group, run, and report a user error once."""

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist

from ticketlab.engine.distributed.group import init, shutdown
from ticketlab.engine.distributed.launcher import ERRORS_ENV, PARENT_ENV, PEER_LOST
from ticketlab.errors import TicketlabError


def die_with_parent() -> None:
    """torchrun starts workers in sessions of their own, so kill -9 of the launcher's process group misses them:
    ask Linux to kill this process when its parent dies, and stop now if the launcher is already gone."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):
        os._exit(PEER_LOST)


def worker(device: torch.device, run: Callable[[], None]) -> NoReturn:
    """One rank: join the group, `run()`, leave, and end the process with its status (`leave`). A user error is
    reported once (through the launcher) with exit status 2; a rank that stops because another vanished exits quietly
    with PEER_LOST."""
    die_with_parent()
    try:
        init(device)
        run()
        status = 0
    except TicketlabError as e:
        report(str(e))
        status = 2
    except RuntimeError as e:  # gloo reports a vanished peer as a plain RuntimeError naming gloo
        if isinstance(e, dist.DistError) or "gloo" in str(e):
            status = PEER_LOST
        else:
            raise
    finally:
        shutdown()
    leave(status)


def leave(status: int) -> NoReturn:
    """End a rank's process now, with `status`, once the group is destroyed: the interpreter's teardown can race the
    process group's background threads and abort ("terminate called without an active exception", status -6 instead
    of the rank's own) on a loaded machine."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def report(message: str) -> None:
    me = int(os.environ.get("RANK", "0"))
    errors = os.environ.get(ERRORS_ENV)
    if errors and Path(errors).is_dir():
        (Path(errors) / f"rank{me}.txt").write_text(message + "\n")
    else:  # under a plain torchrun every rank speaks for itself
        print(f"ticketlab: error: rank {me}: {message}", file=sys.stderr)
