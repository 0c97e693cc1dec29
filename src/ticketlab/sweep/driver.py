"""Run a sweep: expand and validate the spec, take the sweep directory's lock, record the runs in index.json, skip
the finished ones and hand the others, packed into jobs, to an executor. The executor launches attempts; this file
decides what an attempt's outcome means (done, retry, failed) and records it."""

import contextlib
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.core.files import file_errors, write_bytes_atomic
from ticketlab.engine.store import run_lock
from ticketlab.errors import TicketlabError
from ticketlab.sweep.index import Index
from ticketlab.sweep.jobs import Job, Outcome, pack
from ticketlab.sweep.spec import SweepSpec, dump, parse_spec


@dataclass
class Sweep:
    """What executors need: the jobs still to run, their payloads, and where attempts are recorded."""

    spec: SweepSpec
    root: Path
    index: Index
    jobs: list[Job]
    quiet: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    children: set = field(default_factory=set)  # pids of local worker processes running now

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def payload(self, job: Job) -> dict:
        return job.payload(self.runs_dir, self.spec.preset)

    def log_path(self, job: Job) -> str:
        return str(self.root / "logs" / f"{job.id}.log")

    def started(self, job: Job, host: str | None, pid: int | None) -> None:
        self.index.update(job.names, count_attempt=True, status="running", host=host, pid=pid, error=None)
        self.say(f"{job.id}: started {len(job.runs)} run(s)" + (f" (pid {pid} on {host})" if pid else ""))

    def finished(self, job: Job, attempt: int, outcome: Outcome) -> bool:
        """Record the outcome; True when the job should be launched again (it then resumes from its checkpoints)."""
        if outcome.ok:
            self.index.update(job.names, status="done", host=outcome.host, pid=outcome.pid, error=None)
            self.say(f"{job.id}: done ({', '.join(job.names)})")
            return False
        retry = outcome.retryable and attempt <= self.spec.retries and not self.stop.is_set()
        self.index.update(job.names, status="pending" if retry else "failed", host=outcome.host, pid=outcome.pid,
                          error=outcome.error)
        then = f"retry {attempt} of {self.spec.retries}" if retry else "failed"
        self.say(f"{job.id}: attempt {attempt} ended: {outcome.error}; {then} (log: {self.log_path(job)})")
        return retry

    def interrupt(self) -> None:
        """Ctrl-C: no more retries; stop the local workers this driver started (their runs resume next time)."""
        self.stop.set()
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


def run_sweep(spec: SweepSpec, root: str | Path, quiet: bool = False) -> Index:
    """Run (or resume) `spec` in the sweep directory `root`; returns the final index."""
    root = Path(root).resolve()
    plans = spec.runs()  # every config validated before anything starts
    executor = make_executor(spec)  # Ray: connects now, so an unreachable cluster starts nothing
    try:
        with file_errors(root, "create the sweep directory"):
            root.mkdir(parents=True, exist_ok=True)
        with run_lock(root, what="sweep directory"):
            check_same_sweep(root, spec)
            write_bytes_atomic(root / "sweep.yaml", dump(spec).encode())
            jobs = pack(plans, executor.workers, spec.pack)
            index = Index.open(root, plans, root / "runs", {name: job.id for job in jobs for name in job.names})
            todo = [Job(j.id, [r for r in j.runs if index.status(r.name) != "done"]) for j in jobs]
            sweep = Sweep(spec, root, index, [j for j in todo if j.runs], quiet)
            skipped = len(plans) - sum(len(j.runs) for j in sweep.jobs)
            sweep.say(f"sweep {root}: {len(plans)} runs, {skipped} already done, {len(sweep.jobs)} job(s) on "
                      f"{spec.executor} with {executor.workers} worker(s)")
            try:
                executor.run(sweep)
            except KeyboardInterrupt:
                sweep.interrupt()
                raise
            return index
    finally:
        executor.close()


def make_executor(spec: SweepSpec):
    if spec.executor == "ray":
        from ticketlab.sweep.ray import RayExecutor

        return RayExecutor(spec.ray, spec.workers)
    from ticketlab.sweep.local import LocalExecutor

    return LocalExecutor(spec.workers)


def check_same_sweep(root: Path, spec: SweepSpec) -> None:
    """A sweep directory holds one sweep: other runs are refused (executor settings may change)."""
    path = root / "sweep.yaml"
    if not path.exists():
        return
    from ticketlab.engine.config import load_yaml

    existing = parse_spec(load_yaml(path), f"sweep file {path}")
    if existing.what_runs() != spec.what_runs():
        raise TicketlabError(f"sweep directory {root} holds another sweep (preset/set/grid differ from {path}); "
                             "choose another --sweep-dir")
