"""Aggregation over seeds: runs whose configs differ only in their seeds form a `Group`, whose `Row`s hold a
`Stat` (mean ± sample std) per level and kind; the fmt_* functions print them."""

import json
import statistics
from dataclasses import dataclass

from ticketlab.core.masks import describe_density
from ticketlab.report.runs import KINDS, Run, Stage


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over seeds (std 0 for a single seed, which is then not printed)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values) -> "Stat | None":
        values = [float(v) for v in values if v is not None]
        if not values:
            return None
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))

    def format(self, scale: float = 1.0, digits: int = 2, thousands: bool = False, zero_spread: bool = True) -> str:
        """'mean ± std'; just 'mean' for one seed, or for a zero std when `zero_spread` is False."""
        spec = f",.{digits}f" if thousands else f".{digits}f"
        mean = format(self.mean * scale, spec)
        if self.n < 2 or (not zero_spread and self.std == 0):
            return mean
        return f"{mean} ± {format(self.std * scale, spec)}"


def fmt(stat: Stat | None, **kwargs) -> str:
    return "—" if stat is None else stat.format(**kwargs)


def fmt_acc(stat: Stat | None) -> str:
    """Accuracy in percent."""
    return fmt(stat, scale=100.0, digits=2)


def fmt_count(stat: Stat | None) -> str:
    """Parameters and MACs: integers with thousands separators; '± 0' left out (a structural count, not noise)."""
    return fmt(stat, digits=0, thousands=True, zero_spread=False)


def fmt_steps(stat: Stat | None) -> str:
    """Iterations: a measurement, so '± 0' is kept when the seeds agree."""
    return fmt(stat, digits=0, thousands=True)


def fmt_density(stat: Stat | None) -> str:
    return "—" if stat is None else describe_density(stat.mean)


@dataclass
class Row:
    """One kind at one level, aggregated over the seeds of a group."""

    level: int
    kind: str
    density: Stat | None
    params_kept: Stat | None
    macs_kept: Stat | None
    acc: Stat | None  # test accuracy at early stop
    stop: Stat | None  # early-stop iteration
    val_acc: Stat | None  # best validation accuracy: what selects the best ticket (never the test set)
    done: int
    seeds: int
    diverged: int

    @property
    def status(self) -> str:
        parts = [f"in progress ({self.done}/{self.seeds} seeds done)"] if self.done < self.seeds else []
        parts += [f"{self.diverged} diverged"] if self.diverged else []
        return ", ".join(parts) or "done"


def flat_config(config: dict) -> dict[str, object]:
    """{'section.key': value} for every setting but the seeds."""
    return {f"{section}.{key}": value for section, values in config.items() if section != "seeds"
            and isinstance(values, dict) for key, value in values.items()}


def setting(key: str, value) -> str:
    return f"{key}={json.dumps(value) if isinstance(value, dict | list) else value}"


@dataclass
class Group:
    """Runs whose configs differ only in their seeds."""

    runs: list[Run]
    distinct: tuple[str, ...] = ()  # the settings in which the groups of one report differ

    @property
    def config(self) -> dict:
        return self.runs[0].config

    @property
    def label(self) -> str:
        """'<model> on <dataset>', the preset, and the settings that tell this group from the others."""
        flat, preset = flat_config(self.config), self.runs[0].meta.get("preset")
        shown = [setting(k, flat.get(k)) for k in self.distinct[:4]] + (["..."] if len(self.distinct) > 4 else [])
        extra = ([f"preset {preset}"] if preset else []) + shown
        name = f"{flat.get('model.name', '?')} on {flat.get('data.name', '?')}"
        return f"{name} ({'; '.join(extra)})" if extra else name

    @property
    def settings(self) -> str:
        """The non-default settings as written in config.json, seeds left out."""
        non_default = self.runs[0].meta.get("non_default") or {}
        return ", ".join(setting(k, v) for k, v in flat_config(non_default).items()) or "all defaults"

    @property
    def in_progress(self) -> bool:
        return any(run.in_progress for run in self.runs)

    def kinds(self) -> list[str]:
        found = {s.kind for run in self.runs for s in run.stages}
        return [k for k in KINDS if k in found] + sorted(found - set(KINDS))

    def levels(self, kind: str = "imp") -> list[int]:
        return sorted({s.level for run in self.runs for s in run.stages if s.kind == kind})

    def stages(self, kind: str, level: int) -> list[Stage]:
        return [s for run in self.runs if (s := run.stage(kind, level)) is not None]

    def row(self, kind: str, level: int) -> Row:
        stages = self.stages(kind, level)
        done = [s.summary for s in stages if s.done]

        def stat(key):
            return Stat.of(d.get(key) for d in done)

        density = stat("density") or Stat.of(s.density() for s in stages)
        return Row(level, kind, density, stat("params_kept"), stat("macs_kept"), stat("early_stop_test_acc"),
                   stat("early_stop_step"), stat("best_val_acc"), len(done), len(self.runs),
                   sum(d.get("status") == "diverged" for d in done))

    def rows(self, kind: str | None = None) -> list[Row]:
        """Rows by level, then kind (IMP first); only `kind` when given."""
        kinds = [kind] if kind else self.kinds()
        return sorted((self.row(k, lv) for k in kinds for lv in self.levels(k)),
                      key=lambda r: (r.level, kinds.index(r.kind)))

    def best_ticket(self) -> Row | None:
        """The IMP level >= 1 with the highest mean validation accuracy (the sparser one on a tie): chosen on the
        validation split, so its test accuracy is an honest estimate."""
        rows = [r for r in self.rows("imp") if r.level >= 1 and r.acc is not None and r.val_acc is not None]
        return max(rows, key=lambda r: (r.val_acc.mean, r.level), default=None)

    def sparsest_ticket(self) -> Row | None:
        rows = [r for r in self.rows("imp") if r.level >= 1 and r.acc is not None]
        return rows[-1] if rows else None


def group_runs(runs: list[Run]) -> list[Group]:
    """Groups in order of first appearance; runs inside a group ordered by seeds."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group_key, []).append(run)
    out = [Group(sorted(rs, key=seed_order)) for rs in groups.values()]
    for group in out:
        group.distinct = distinct_settings(group, out)
    return out


def distinct_settings(group: Group, groups: list[Group]) -> tuple[str, ...]:
    """The settings that tell `group` from the others with the same model, dataset and preset."""
    def base(g: Group) -> tuple:
        flat = flat_config(g.config)
        return flat.get("model.name"), flat.get("data.name"), g.runs[0].meta.get("preset")

    flats = [flat_config(g.config) for g in groups if base(g) == base(group)]
    keys = sorted({k for flat in flats for k in flat})
    return tuple(k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1)


def seed_order(run: Run) -> tuple:
    """Sort key: init, data, prune seed, then any other seeds by name (numbers compare as numbers)."""
    known = ("init", "data", "prune")
    return tuple(str(run.seeds.get(k)).zfill(12) for k in [*known, *sorted(set(run.seeds) - set(known))])
