"""The local executor: `workers` jobs at a time on this machine, each attempt in a fresh worker process
(ticketlab.sweep.worker) so that a crash or kill -9 of one worker costs only its own progress since its checkpoint."""

import os
import socket
from concurrent.futures import ThreadPoolExecutor

from ticketlab.sweep.jobs import Outcome
from ticketlab.sweep.worker import execute


class LocalExecutor:
    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1

    def run(self, sweep) -> None:
        threads = max(1, (os.cpu_count() or 1) // self.workers)  # cores shared out, not oversubscribed
        host = socket.gethostname()

        def attempts(job):
            attempt = 1
            while not sweep.stop.is_set():
                def on_start(pid, job=job):
                    sweep.children.add(pid)
                    sweep.started(job, host, pid)

                outcome = Outcome(**execute(sweep.payload(job), sweep.log_path(job), threads, on_start))
                sweep.children.discard(outcome.pid)
                if not sweep.finished(job, attempt, outcome):
                    return
                attempt += 1

        pool = ThreadPoolExecutor(self.workers)
        try:
            for _ in pool.map(attempts, sweep.jobs):  # re-raises a thread's exception here
                pass
        except KeyboardInterrupt:
            sweep.interrupt()  # before waiting for the threads: they wait for their workers
            raise
        finally:
            pool.shutdown(wait=True)

    def close(self) -> None:
        pass
