"""A sweep: one preset, fixed settings and a grid of values, validated and expanded into ordinary runs.

    preset: mlp-digits
    set: {train.steps: 300it}                 # every run
    grid: {train.lr: [1e-3, 3e-3], seeds: [0, 1, 2]}   # the product: 6 runs; `seeds: N` sets init, data and prune
    executor: local                           # local | ray
    workers: 2                                # parallel jobs (default: the machine's cores / the cluster's CPUs)
    retries: 2                                # re-launches of a job whose worker died
    pack: true                                # runs differing only in seeds train as one batched job
    ray: {address: 10.0.0.1:6379, num_cpus: 1, num_gpus: 0}

Every point of the grid is built into a full Config (ticketlab.engine.presets.build_config) before anything runs, so a
bad key or value is one line naming it, with the closest allowed name."""

import copy
import itertools
import math
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from ticketlab.engine.config import Config, load_yaml
from ticketlab.engine.yaml_files import NotYaml, parse
from ticketlab.errors import TicketlabError, unknown

EXECUTORS = ("local", "ray")
MAX_WORKERS, MAX_RETRIES = 4096, 100
SEED_KEYS = ("seeds.init", "seeds.data", "seeds.prune")


@dataclass
class RayOptions:
    address: str = ""
    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class RunPlan:
    """One point of the grid: its values (as the grid names them) and the full config they give."""

    point: dict[str, Any]
    config: Config

    @property
    def name(self) -> str:
        return self.config.run_name()


@dataclass
class SweepSpec:
    preset: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    executor: str = "local"
    workers: int | None = None
    retries: int = 2
    pack: bool = True
    ray: RayOptions = field(default_factory=RayOptions)

    def to_dict(self) -> dict:
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        out["ray"] = vars(self.ray).copy()
        if self.executor != "ray" and not self.ray.address:
            del out["ray"]  # not used
        return out

    def what_runs(self) -> dict:
        """The part that decides the runs (executor settings change how, not what)."""
        return {"preset": self.preset, "set": self.set, "grid": self.grid}

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]

    def runs(self) -> list[RunPlan]:
        """Every grid point as a validated config; two points giving the same run are refused."""
        from ticketlab.engine.presets import build_config

        plans, seen = [], {}
        for point in self.points():
            try:
                cfg = build_config(self.preset, nested({**self.set, **expand_seeds(point)}))
                check_names(cfg)
            except TicketlabError as e:
                raise TicketlabError(f"sweep point {point}: {e}") from None
            plan = RunPlan(point, cfg)
            if plan.name in seen:
                raise TicketlabError(f"sweep points {seen[plan.name]} and {point} give the same run {plan.name}")
            seen[plan.name] = point
            plans.append(plan)
        return plans


def parse_spec(data: Any, where: str = "sweep") -> SweepSpec:
    """A validated SweepSpec from a mapping (a sweep file's contents)."""
    if not isinstance(data, dict):
        raise TicketlabError(f"{where} must be a mapping of sweep keys, got {type(data).__name__}")
    check_keys(data, SweepSpec, "sweep key")
    spec = SweepSpec(**{k: v for k, v in data.items() if k != "ray"})
    spec.ray = parse_ray(data.get("ray") or {})
    if spec.preset is not None and not isinstance(spec.preset, str):
        raise TicketlabError(f"sweep preset must be a preset name, got {spec.preset!r}")
    spec.set = flat_keys(spec.set or {}, "set")
    spec.grid = flat_keys(spec.grid or {}, "grid")
    check_grid(spec)
    if spec.executor not in EXECUTORS:
        raise unknown("sweep executor", spec.executor, EXECUTORS)
    if spec.executor == "ray" and not spec.ray.address:
        raise TicketlabError("sweep executor ray needs ray.address (host:port of the cluster's head, or 'auto')")
    check_int(spec.workers, "workers", 1, none_ok=True)
    check_int(spec.retries, "retries", 0)
    for key, value, high in (("workers", spec.workers, MAX_WORKERS), ("retries", spec.retries, MAX_RETRIES)):
        if value is not None and value > high:
            raise TicketlabError(f"sweep {key} must be at most {high}, got {value!r}")
    if not isinstance(spec.pack, bool):
        raise TicketlabError(f"sweep pack must be true or false, got {spec.pack!r}")
    return spec


def check_keys(data: dict, settings: type, what: str) -> None:
    """Refuse a key that is not a field of the dataclass `settings`, naming the closest one."""
    allowed = [f.name for f in fields(settings)]
    for key in data:
        if key not in allowed:
            raise unknown(what, key, allowed)


def load_spec(path) -> SweepSpec:
    return parse_spec(load_yaml(path, "sweep file"), f"sweep file {path}")


def parse_ray(data: Any) -> RayOptions:
    if not isinstance(data, dict):
        raise TicketlabError(f"sweep ray must be a mapping {{address, num_cpus, num_gpus}}, got {data!r}")
    check_keys(data, RayOptions, "sweep ray key")
    ray = RayOptions(**data)
    if not isinstance(ray.address, str):
        raise TicketlabError(f"sweep ray.address must be host:port, got {ray.address!r}")
    for key, bound in (("num_cpus", "> 0"), ("num_gpus", ">= 0")):
        value = getattr(ray, key)
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < 0 or (value == 0 and bound == "> 0"):
            raise TicketlabError(f"sweep ray.{key} must be a number {bound}, got {value!r}")
    return ray


def flat_keys(values: Any, what: str) -> dict[str, Any]:
    """{'train.lr': v} as given, or {'train': {'lr': v}} flattened to it; `seeds` is a key of its own."""
    if not isinstance(values, dict):
        raise TicketlabError(f"sweep {what} must be a mapping of section.key: value, got {values!r}")
    out = {}
    for key, value in values.items():
        if "." not in str(key) and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        elif "." in str(key) or key == "seeds":
            out[str(key)] = value
        else:
            raise TicketlabError(f"sweep {what} key {key!r} must look like section.key (e.g. train.lr) or be seeds")
    return out


def check_grid(spec: SweepSpec) -> None:
    if not spec.grid:
        raise TicketlabError("sweep grid is empty; give at least one key with a list of values, e.g. seeds: [0, 1, 2]")
    for key, values in spec.grid.items():
        if not isinstance(values, list) or not values:
            raise TicketlabError(f"sweep grid key {key!r} needs a non-empty list of values, got {values!r}")
    fixed = set(expand_seeds(dict.fromkeys(spec.set, 0)))
    for key in spec.grid:
        clash = fixed & set(expand_seeds({key: 0}))
        if clash:
            raise TicketlabError(f"sweep key {sorted(clash)[0]!r} is in both set and grid; keep it in one")
    if "seeds" in spec.set:
        raise TicketlabError("sweep set key 'seeds' belongs in the grid (seeds: [0, 1, 2]) or as seeds.init etc.")


def check_int(value: Any, what: str, low: int, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise TicketlabError(f"sweep {what} must be an integer >= {low}, got {value!r}")


def check_names(cfg: Config) -> None:
    """Model and dataset names exist (cheap; loading the data is the worker's job)."""
    from ticketlab.data import DATASETS
    from ticketlab.models import model_info

    model_info(cfg.model.name)
    DATASETS.get(cfg.data.name)


def expand_seeds(point: dict[str, Any]) -> dict[str, Any]:
    """`seeds: N` is shorthand for the three seeds (as `ticketlab run --seeds N`)."""
    out = {k: v for k, v in point.items() if k != "seeds"}
    if "seeds" in point:
        out.update(dict.fromkeys(SEED_KEYS, point["seeds"]))
    return out


def nested(flat: dict[str, Any]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        if not name or "." in name:
            raise TicketlabError(f"sweep key {key!r} must look like section.key (e.g. train.lr)")
        out.setdefault(section, {})[name] = value
    return out


def parse_grid_arg(text: str) -> tuple[str, list]:
    """`key=v1,v2,...` from the command line; values parsed as YAML (`prune.exclude=[fc3.weight],[]`)."""
    key, sep, raw = text.partition("=")
    try:
        values = parse(f"[{raw}]") if sep else None
    except NotYaml:
        values = None
    if not key.strip() or not isinstance(values, list):
        raise TicketlabError(f"--grid {text!r} must look like section.key=v1,v2 (e.g. train.lr=0.001,0.003)")
    return key.strip(), values


def dump(spec: SweepSpec) -> str:
    return yaml.safe_dump(spec.to_dict(), sort_keys=False, default_flow_style=None)
