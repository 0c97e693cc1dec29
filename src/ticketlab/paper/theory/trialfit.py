"""Intervals from the right unit: one slope per trial, and a bootstrap over trials (teachers).

The trials of a grid share their teacher (and often their samples) across cells, so the points of a pooled fit
are not independent and its t interval is too narrow. Here each trial gives one number (its own slope over its
cells), and the interval is Student's t over those numbers; statistics that are not per-trial slopes (a phase
boundary, a censored fit) get a percentile bootstrap that resamples whole trials.
"""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from ticketlab.paper.theory.fitting import LEVEL, fit_line


def t_quantile(dof: int, level: float = LEVEL) -> float:
    """Student's t quantile (scipy when installed, else the Cornish-Fisher expansion, within 1% for dof >= 3)."""
    try:
        from scipy.stats import t
        return float(t.ppf(0.5 + level / 2, dof))
    except ImportError:
        z = float(torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
        return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


@dataclass(frozen=True)
class TrialSlope:
    slope: float  # mean over trials of each trial's own least-squares slope
    ci: tuple[float, float]  # Student's t over the trials
    trials: int
    per_trial: tuple[float, ...]
    pooled_ci: tuple[float, float] | None  # the (too narrow) pooled-points interval, for comparison
    method: str = "per-trial slopes, t over trials"

    def to_dict(self) -> dict:
        return asdict(self)

    def contains(self, value: float) -> bool:
        return self.ci[0] <= value <= self.ci[1]

    def describe(self, digits: int = 3) -> str:
        f = f"{{:.{digits}g}}"
        return (f"{f.format(self.slope)}, 95% CI [{f.format(self.ci[0])}, {f.format(self.ci[1])}] "
                f"(one slope per trial, {self.trials} trials)")


def mean_ci(values) -> tuple[float, tuple[float, float]]:
    """Mean and Student's t 95% interval of independent values (nan when fewer than 2)."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    v = v[torch.isfinite(v)]
    if v.numel() < 2:
        return (float(v.mean()) if v.numel() else float("nan")), (float("nan"), float("nan"))
    half = t_quantile(v.numel() - 1) * float(v.std()) / math.sqrt(v.numel())
    return float(v.mean()), (float(v.mean()) - half, float(v.mean()) + half)


def _slope(x: torch.Tensor, y: torch.Tensor) -> float:
    keep = torch.isfinite(x) & torch.isfinite(y)
    x, y = x[keep], y[keep]
    if x.numel() < 2 or float(x.std()) == 0.0:
        return float("nan")
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / xc.pow(2).sum())


def per_trial_slopes(x, y, trial, log: bool = False, group=None) -> TrialSlope | None:
    """One least-squares slope of y on x per trial (log-log when `log`), then t over trials.

    `group` (optional, e.g. r): x and y are centred within each (trial, group) first, so the slope only uses
    variation inside a group (a fixed effect per group): "does y follow x when r is held fixed?"."""
    x, y = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (x, y))
    if log:
        x, y = (torch.where(v > 0, v, torch.nan).log() for v in (x, y))
    trial = torch.as_tensor(trial).flatten()
    if group is not None:
        group = torch.as_tensor(group).flatten()
        x, y = x.clone(), y.clone()
        for t in trial.unique():
            for g in group[trial == t].unique():
                sel = (trial == t) & (group == g) & torch.isfinite(x) & torch.isfinite(y)
                if bool(sel.any()):
                    x[sel] -= x[sel].mean()
                    y[sel] -= y[sel].mean()
    slopes = [_slope(x[trial == t], y[trial == t]) for t in trial.unique()]
    slopes = [s for s in slopes if math.isfinite(s)]
    if len(slopes) < 2:
        return None
    mean, ci = mean_ci(slopes)
    pooled = fit_line(x, y)
    return TrialSlope(mean, ci, len(slopes), tuple(slopes), pooled.slope_ci if pooled else None)


def bootstrap_trials(statistic: Callable[[torch.Tensor], float], trials: int, resamples: int = 400,
                     seed: int = 0) -> tuple[float, tuple[float, float], int]:
    """Percentile 95% interval of `statistic(trial_indices)` over resamples of whole trials (with replacement).
    Returns the statistic on all trials, the interval and how many resamples gave a finite value."""
    g = torch.Generator().manual_seed(seed)
    full = float(statistic(torch.arange(trials)))
    values = torch.tensor([float(statistic(torch.randint(trials, (trials,), generator=g)))
                           for _ in range(resamples)], dtype=torch.float64)
    values = values[torch.isfinite(values)]
    if values.numel() < resamples // 2:
        return full, (float("nan"), float("nan")), int(values.numel())
    lo, hi = torch.quantile(values, torch.tensor([(1 - LEVEL) / 2, (1 + LEVEL) / 2], dtype=torch.float64)).tolist()
    return full, (lo, hi), int(values.numel())
