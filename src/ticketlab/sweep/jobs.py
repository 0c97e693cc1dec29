"""Jobs: the units a sweep hands to workers. Runs whose configs differ only in their seeds go into one job, which the
engine trains level by level as batched models (`run_lotteries`, `train.batch_tickets`); a job is cut in balanced
pieces when that leaves workers idle. What a worker receives is JSON only: the run directory's parent, the preset
name, each run's full config and the driver's working directory."""

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ticketlab.engine.config import SeedConfig
from ticketlab.plugins import imported
from ticketlab.sweep.spec import RunPlan

USER_ERROR = 2  # the exit status of a TicketlabError: the same input fails the same way, so it is not retried


@dataclass
class Job:
    id: str
    runs: list[RunPlan]

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.runs]

    def payload(self, runs_dir: Path, preset: str | None) -> dict:
        """`cwd`: the driver's working directory, where relative paths in the configs (data.root) start; `imports`:
        the plugin modules the driver imported (--import, imports:), which register the models the configs name."""
        return {"runs_dir": str(runs_dir), "preset": preset, "configs": [r.config.to_dict() for r in self.runs],
                "cwd": os.getcwd(), "imports": imported()}


@dataclass
class Outcome:
    """How one attempt of a job ended, as the worker reports it (JSON-able for Ray)."""

    returncode: int
    host: str
    pid: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def retryable(self) -> bool:
        return self.returncode not in (0, USER_ERROR)


def pack(plans: list[RunPlan], workers: int, enabled: bool = True) -> list[Job]:
    """Jobs over all runs of the sweep, in grid order: the same spec and worker count give the same jobs."""
    groups: dict[str, list[RunPlan]] = {}
    for plan in plans:
        key = dataclasses.replace(plan.config, seeds=SeedConfig()).hash() if enabled else plan.name
        groups.setdefault(key, []).append(plan)
    limit = max(1, math.ceil(len(plans) / max(workers, 1)))
    chunks = [chunk for group in groups.values() for chunk in balanced(group, limit)]
    return [Job(f"job-{i:03d}", chunk) for i, chunk in enumerate(chunks)]


def balanced(items: list, limit: int) -> list[list]:
    """`items` in the fewest chunks of at most `limit`, sizes differing by at most one."""
    n = math.ceil(len(items) / limit)
    return [items[i * len(items) // n : (i + 1) * len(items) // n] for i in range(n)]
