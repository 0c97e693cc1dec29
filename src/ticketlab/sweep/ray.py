"""The Ray executor: jobs as Ray tasks on an existing cluster (`ray.address`), each with `ray.num_cpus` CPUs and
`ray.num_gpus` GPUs. A task runs the same worker process as the local executor (ticketlab.sweep.worker) on whichever
node Ray picks, so every node needs ticketlab installed and the sweep directory at the same path (a shared
filesystem). Sent to a task: the job's JSON payload (run directory parent, preset, full configs), the log path and a
thread count; the task function goes by reference (`ticketlab.sweep.worker.execute`), no code is pickled by value.
Ray's own task retries are off: a failed attempt is retried here, counted in index.json, and resumes."""

import socket
from collections import deque

from ticketlab.errors import TicketlabError
from ticketlab.sweep.jobs import Outcome
from ticketlab.sweep.spec import RayOptions
from ticketlab.sweep.worker import execute

CONNECT_TIMEOUT = 5.0  # seconds to reach the head node before giving up


class RayExecutor:
    def __init__(self, options: RayOptions, workers: int | None = None):
        self.ray = import_ray()
        self.options = options
        check_reachable(options.address)
        try:
            self.ray.init(address=options.address, log_to_driver=False, logging_level="ERROR")
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ... with multi-line messages
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TicketlabError(f"cannot connect to the Ray cluster at {options.address}: {first}") from None
        cpus = self.ray.cluster_resources().get("CPU", 1.0)
        self.workers = workers or max(1, int(cpus // options.num_cpus))

    def run(self, sweep) -> None:
        ray, opts = self.ray, self.options
        task = ray.remote(num_cpus=opts.num_cpus, num_gpus=opts.num_gpus, max_retries=0)(execute)
        threads = max(1, int(opts.num_cpus))
        queue, running = deque((job, 1) for job in sweep.jobs), {}
        while queue or running:
            while queue and len(running) < self.workers:
                job, attempt = queue.popleft()
                sweep.started(job, None, None)  # Ray picks the node; host and pid are recorded when it reports
                running[task.remote(sweep.payload(job), sweep.log_path(job), threads)] = (job, attempt)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job, attempt = running.pop(ref)
                try:
                    outcome = Outcome(**ray.get(ref))
                except ray.exceptions.RayError as e:  # the Ray worker itself died (its job's process with it)
                    outcome = Outcome(-1, "?", None, f"Ray task failed: {type(e).__name__}")
                if sweep.finished(job, attempt, outcome):
                    queue.append((job, attempt + 1))

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()


def import_ray():
    try:
        import ray
    except ImportError:
        raise TicketlabError("the ray executor needs Ray: pip install 'ticketlab[ray]'") from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail fast, before anything starts, when nothing listens at host:port ('auto' is left to Ray)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise TicketlabError(f"ray.address {address!r} must look like host:port (e.g. 10.0.0.1:6379) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise TicketlabError(f"cannot reach the Ray cluster at {address} ({reason}); start it with "
                             "`ray start --head` or fix ray.address") from None
