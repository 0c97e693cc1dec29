"""One attempt of a job, in a fresh Python process (`python -m ticketlab.sweep.worker`, job as JSON on stdin) that
runs the ordinary engine: `Lottery.open` + `run_lotteries` under each run directory's lock. A worker killed at any
moment loses only the steps since its last checkpoint (`train.checkpoint_every`); the retry resumes from there."""

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.sweep.jobs import Outcome

PARENT_ENV = "TICKETLAB_SWEEP_PARENT"


def execute(payload: dict, log_path: str, threads: int, on_start=None) -> dict:
    """Run the job in a child process; its output goes to `log_path`. Returns an Outcome as a dict (JSON for Ray).
    `threads`: OMP_NUM_THREADS of the child unless the environment sets it already."""
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    env.setdefault("OMP_NUM_THREADS", str(max(1, int(threads))))
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}\n".encode())
        log.flush()
        cwd = payload.get("cwd")  # the driver's, when this node has it (a shared filesystem): relative data.root
        proc = subprocess.Popen([sys.executable, "-m", "ticketlab.sweep.worker"], stdin=subprocess.PIPE,
                                stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd if cwd and os.path.isdir(cwd) else None)
        if on_start:
            on_start(proc.pid)
        proc.communicate(json.dumps(payload).encode())
    code = proc.returncode
    error = None if code == 0 else (f"killed by {signal.Signals(-code).name}" if code < 0 else last_line(log_path))
    return vars(Outcome(code, socket.gethostname(), proc.pid, error))


def last_line(path: str) -> str:
    lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "worker exited without output"


def run_job(payload: dict) -> None:
    from ticketlab.accel import select
    from ticketlab.engine.config import from_dict
    from ticketlab.engine.lottery import Lottery
    from ticketlab.engine.stages import run_lotteries
    from ticketlab.engine.store import run_locks
    from ticketlab.engine.threads import apply_threads
    from ticketlab.plugins import load_plugins

    load_plugins(payload.get("imports", []))  # the driver's plugins: the configs may name their models
    cfgs = [from_dict(c) for c in payload["configs"]]
    apply_threads(cfgs[0].train.threads)  # 0: torch's default, here OMP_NUM_THREADS as `execute` set it
    lotteries = [Lottery.open(cfg, payload["runs_dir"], payload["preset"], accelerator=select()) for cfg in cfgs]
    with run_locks([lottery.store.root for lottery in lotteries], wait=True):  # another writer: wait, never mix
        for store in run_lotteries(lotteries):
            print(f"run finished: {store.root}", flush=True)


def die_with_parent() -> None:
    """Linux: SIGKILL this worker when the process that started it dies (a killed Ray worker or sweep driver leaves
    no orphan training). Elsewhere an orphan may finish its run; the run lock keeps a retry from interleaving."""
    parent = int(os.environ.get(PARENT_ENV, "0"))
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main() -> int:
    from ticketlab.engine.heap import keep_freed_memory

    die_with_parent()
    keep_freed_memory()  # as the command line does (engine/heap.py)
    try:
        run_job(json.load(sys.stdin))
    except TicketlabError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
