"""`index.json` of a sweep directory: per run, its grid point, run directory, job, status, attempts, the worker that
ran it last (host, pid), the last error and those of earlier attempts. Only the sweep's driver writes it, atomically
and under a thread lock, so neither a killed worker nor a killed driver leaves it half-written."""

import os
import threading
import time
from pathlib import Path

from ticketlab.core.files import read_json, write_json_atomic
from ticketlab.sweep.spec import RunPlan

STATUSES = ("pending", "running", "done", "failed")


class Index:
    def __init__(self, path: Path, entries: list[dict]):
        self.path, self.entries = Path(path), entries
        self.by_name = {e["run"]: e for e in entries}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, sweep_dir: Path, plans: list[RunPlan], runs_dir: Path, jobs: dict[str, str]) -> "Index":
        """The sweep's runs, keeping what an earlier invocation recorded. 'running' from an earlier driver is stale
        (this driver holds the sweep lock): such a run is pending again and resumes from its checkpoints. `jobs`:
        run name -> the job it is in this time."""
        path = Path(sweep_dir) / "index.json"
        old = {e["run"]: e for e in read_json(path)["runs"]} if path.exists() else {}
        entries = []
        for plan in plans:
            prev = old.get(plan.name, {})
            run_dir = Path(runs_dir) / plan.name
            status = prev.get("status", "pending")
            if status == "running" or (status == "done" and not (run_dir / "config.json").exists()):
                status = "pending"
            entries.append({"run": plan.name, "dir": os.path.relpath(run_dir, sweep_dir), "point": plan.point,
                            "job": jobs[plan.name], "status": status, "attempts": prev.get("attempts", 0),
                            "host": prev.get("host"), "pid": prev.get("pid"), "error": prev.get("error"),
                            "errors": prev.get("errors", []), "updated": prev.get("updated")})
        index = cls(path, entries)
        index.save()
        return index

    def status(self, name: str) -> str:
        return self.by_name[name]["status"]

    def update(self, names: list[str], count_attempt: bool = False, **values) -> None:
        with self._lock:
            for name in names:
                entry = self.by_name[name]
                entry.update(values, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                entry["attempts"] += count_attempt
                if values.get("error"):  # every failed attempt's reason stays, also once a retry succeeds
                    entry.setdefault("errors", []).append(values["error"])
            self._save()

    def count(self) -> dict[str, int]:
        return {s: sum(e["status"] == s for e in self.entries) for s in STATUSES}

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        write_json_atomic(self.path, {"counts": self.count(), "runs": self.entries})
