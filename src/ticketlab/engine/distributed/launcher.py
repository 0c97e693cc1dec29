"""The launcher of `ticketlab run --nproc N`: runs the workers under torchrun's elastic launcher and turns a failed
worker into one line. The environment variables and exit status below are its contract with the workers."""

import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

from ticketlab.engine.distributed import loopback
from ticketlab.errors import TicketlabError

ERRORS_ENV = "TICKETLAB_DDP_ERRORS"  # directory where workers leave their one-line error (set by `launch`)
PARENT_ENV = "TICKETLAB_DDP_PARENT"  # pid of the launcher: a worker whose launcher is gone exits at once
PEER_LOST = 3  # exit status of a worker that stopped because another rank vanished (a consequence, not the cause)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], nproc: int) -> None:
    """Run `ticketlab <argv>` as `nproc` ranks under torchrun's elastic launcher (in this process); a failed rank
    becomes one line: its own error message, or which rank died."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)  # failures are reported below, in one line
    with tempfile.TemporaryDirectory(prefix="ticketlab-ddp-") as tmp, loopback.bound_rendezvous() as endpoint:
        os.environ[ERRORS_ENV], os.environ[PARENT_ENV] = tmp, str(os.getpid())
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        config = LaunchConfig(  # the store listens on `sock`: 127.0.0.1 unless TICKETLAB_DDP_ADDR (loopback.py)
            min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"ticketlab-{os.getpid()}",
            rdzv_backend=loopback.BACKEND, rdzv_endpoint=endpoint, rdzv_configs={"rank": 0},
            max_restarts=0, logs_specs=DefaultLogsSpecs(log_dir=os.path.join(tmp, "logs")),
        )
        try:
            elastic_launch(config, sys.executable)("-u", "-m", "ticketlab.cli", *argv)
        except ChildFailedError as e:
            raise TicketlabError(failure_message(e.failures, Path(tmp))) from None
        except SignalException:
            raise KeyboardInterrupt from None


def failure_message(failures: dict, errors: Path) -> str:
    """The lowest rank's own error message if a rank left one, else which rank died first and how."""
    reported = sorted(errors.glob("rank*.txt"), key=lambda p: int(p.stem[4:]))
    if reported:
        return reported[0].read_text().strip()
    # The launcher stops the other ranks with SIGTERM once one fails; those, and ranks that lost a peer, are not causes.
    causes = {r: f for r, f in failures.items() if f.exitcode not in (PEER_LOST, -signal.SIGTERM)} or failures
    first = min(causes, key=lambda r: (causes[r].timestamp, r))
    code, resume = causes[first].exitcode, "rerun the same command to resume from the last checkpoint"
    if code < 0:
        return f"rank {first} died (killed by {causes[first].signal_name()}); {resume}"
    if code == PEER_LOST:
        return f"rank {first} lost contact with the other ranks (a hang or a network failure); {resume}"
    return f"rank {first} failed (exit status {code}; its traceback is above); {resume}"
