"""Reading run directories (layout: docs/run-directory.md): a `Run` and its `Stage`s, as found on disk.

Reading never writes and works on runs still training: a stage without summary.json is unfinished."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ticketlab.core.files import load_tensors, read_json
from ticketlab.core.masks import Masks
from ticketlab.engine.store import read_metrics, read_summary
from ticketlab.errors import TicketlabError

# the kinds of stage, in the order the report shows them, and their display names
KINDS = ("imp", "random_pruning", "random_reinit", "oneshot")
LABELS = {"imp": "IMP", "random_pruning": "random pruning", "random_reinit": "random reinit", "oneshot": "one-shot"}
LEVEL_DIR = re.compile(r"^level_(\d+)$")


@dataclass
class Stage:
    """One trained network of a run: an IMP level, or a baseline beside it."""

    path: Path
    kind: str
    level: int
    summary: dict | None  # None until training ends: summary.json is written last
    metrics: list[dict]

    @property
    def done(self) -> bool:
        return self.summary is not None

    def masks(self) -> Masks | None:
        path = self.path / "masks.safetensors"
        return Masks.load(path) if path.is_file() else None

    def final_weights(self) -> dict | None:
        path = self.path / "final.safetensors"
        return load_tensors(path)[0] if path.is_file() else None

    def density(self) -> float | None:
        if self.done:
            return self.summary.get("density")
        masks = self.masks()  # unfinished stages still know what they train with
        return masks.density() if masks is not None else None

    def layer_density(self) -> dict[str, float]:
        if self.done and self.summary.get("layer_density"):
            return self.summary["layer_density"]
        masks = self.masks()
        return masks.densities() if masks is not None else {}


def load_stage(path: Path, kind: str, level: int) -> Stage:
    summary = read_summary(path)  # a corrupt summary.json is an error naming it, never a finished stage
    return Stage(path, kind, level, summary, read_metrics(path / "metrics.jsonl"))


@dataclass
class Run:
    """One run directory: its config and every stage found on disk."""

    path: Path
    meta: dict  # config.json as written: hash, config, preset, non_default
    stages: list[Stage]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> dict:
        return self.meta["config"]

    @property
    def seeds(self) -> dict:
        return self.config.get("seeds", {})

    @property
    def group_key(self) -> str:
        """Runs with equal keys differ only in their seeds and are aggregated."""
        return json.dumps({k: v for k, v in self.config.items() if k != "seeds"}, sort_keys=True)

    def stage(self, kind: str, level: int) -> Stage | None:
        return next((s for s in self.stages if s.kind == kind and s.level == level), None)

    @property
    def in_progress(self) -> bool:
        """A stage without summary.json, or fewer levels/baselines on disk than the config asks for.

        With a stopping rule (target_density, max_drop) the number of levels is not known in advance, so only
        the stages on disk count then."""
        if not self.stages or not all(s.done for s in self.stages):
            return True
        lottery = self.config.get("lottery", {})
        levels = sorted({s.level for s in self.stages})
        baselines = lottery.get("baselines") or []
        if any(self.stage(kind, level) is None for level in levels if level >= 1 for kind in baselines):
            return True
        stops_early = lottery.get("target_density") is not None or lottery.get("max_drop") is not None
        planned = lottery.get("levels")
        return not stops_early and isinstance(planned, int) and levels[-1] < planned


def load_run(path: Path) -> Run:
    meta = read_json(path / "config.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise TicketlabError(f"{path / 'config.json'} has no 'config' mapping; not a ticketlab run directory")
    stages = []
    level_dirs = [(int(m[1]), p) for p in path.iterdir() if p.is_dir() and (m := LEVEL_DIR.match(p.name))]
    for level, level_dir in sorted(level_dirs):
        stages.append(load_stage(level_dir, "imp", level))
        baselines = level_dir / "baselines"
        kinds = sorted(p for p in baselines.iterdir() if p.is_dir()) if baselines.is_dir() else []
        stages += [load_stage(p, p.name, level) for p in kinds]
    return Run(path, meta, stages)


def find_run_dirs(path: str | Path) -> list[Path]:
    """`path` itself if it holds config.json, else the run directories one or two levels below it."""
    path = Path(path)
    if not path.is_dir():
        raise TicketlabError(f"no such run directory: {path}")
    if (path / "config.json").is_file():
        return [path]
    found = sorted({p.parent for p in [*path.glob("*/config.json"), *path.glob("*/*/config.json")]})
    found = [p for p in found if not any(q in p.parents for q in found)]  # a run's own subfolders are not runs
    if not found:
        raise TicketlabError(f"{path} is not a run directory and holds none (no config.json one or two levels down)")
    return found


def load_runs(paths) -> list["Run"]:
    """Every run directory named by `paths` (run directories or directories of them), each read once."""
    if isinstance(paths, str | Path):
        paths = [paths]
    dirs: dict[Path, Path] = {}
    for path in paths:
        for run_dir in find_run_dirs(path):
            dirs.setdefault(run_dir.resolve(), run_dir)
    if not dirs:
        raise TicketlabError("no run directories given")
    return [load_run(d) for d in dirs.values()]
