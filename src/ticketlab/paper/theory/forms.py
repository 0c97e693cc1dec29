"""Which functional form the data support, before any exponent is quoted.

`compare_forms(x, y, trial)` fits, on the same points,
  power law  log y = a + b·log x      and      line  y = a + b·x,
and ranks them by AIC on the y scale (the power law's log-normal likelihood carries the Jacobian sum(log y), so the
two are comparable). It also measures, per trial, the local log-log slopes between neighbouring x values and the
curvature c of log y = a + b·u + c·u² (u = centred log x); intervals are t over trials (trialfit). A single
exponent is only quoted as "the" exponent when the curvature interval contains 0; otherwise the verdict gives the
range the local slope runs over (a bend whose local exponents all stay within TOLERANCE of the claim still
agrees).
"""

import math
from dataclasses import asdict, dataclass

import torch

from ticketlab.paper.theory.fitting import fit_line
from ticketlab.paper.theory.trialfit import TrialSlope, mean_ci, per_trial_slopes

TOLERANCE = 0.1  # a local exponent this close to the claimed one counts as agreeing


@dataclass(frozen=True)
class FormComparison:
    best: str  # "power law" or "line" (lower AIC)
    aic: dict
    exponent: TrialSlope  # per-trial log-log slope
    curvature: tuple[float, tuple[float, float]]  # per-trial quadratic coefficient in log-log, t interval
    local: list  # [{"x0", "x1", "slope", "ci"}] per neighbouring pair of x values

    def to_dict(self) -> dict:
        return {**asdict(self), "exponent": self.exponent.to_dict()}

    @property
    def bends(self) -> bool:
        lo, hi = self.curvature[1]
        return math.isfinite(lo) and not lo <= 0 <= hi

    def local_range(self) -> tuple[float, float]:
        slopes = [p["slope"] for p in self.local if math.isfinite(p["slope"])]
        return (slopes[0], slopes[-1]) if slopes else (float("nan"), float("nan"))

    def verdict(self, claimed: float) -> tuple[str, str]:
        """('agrees' | 'partly' | 'disagrees', one sentence) for a claimed exponent."""
        e = self.exponent
        if not self.bends:
            word = "agrees" if e.contains(claimed) else "disagrees"
            return word, (f"one power law fits (curvature CI contains 0); exponent {e.describe()} "
                          f"{'contains' if e.contains(claimed) else 'excludes'} the claimed {claimed:+g}")
        first, last = self.local_range()
        local = [p["slope"] for p in self.local if math.isfinite(p["slope"])]
        if local and max(abs(x - claimed) for x in local) <= TOLERANCE:
            return "agrees", (f"bends slightly (curvature CI excludes 0), but every local exponent ({first:.2f} → "
                              f"{last:.2f}) is within {TOLERANCE} of the claimed {claimed:+g}; per-trial exponent "
                              f"{e.describe()}")
        inside = min(first, last) <= claimed <= max(first, last)
        return ("partly" if inside else "disagrees",
                f"not a single power law: the local exponent runs {first:.2f} → {last:.2f} across the range "
                f"(curvature CI excludes 0); the claimed {claimed:+g} is {'inside' if inside else 'outside'} that "
                f"range; {self.best} preferred by AIC")


def _aic(x: torch.Tensor, y: torch.Tensor) -> dict:
    n = y.numel()
    line = fit_line(x, y)
    power = fit_line(x.log(), y.log())
    out = {}
    if line:
        rss = float((y - line.slope * x - line.intercept).pow(2).sum())
        out["line"] = n * math.log(max(rss, 1e-300) / n) + 6
    if power:
        rss = float((y.log() - power.slope * x.log() - power.intercept).pow(2).sum())
        out["power law"] = n * math.log(max(rss, 1e-300) / n) + 2 * float(y.log().sum()) + 6
    return out


def _per_trial_cells(x, y, trial):
    """{trial: (sorted distinct x, mean log y at each)} over the positive finite points."""
    cells = {}
    for t in trial.unique().tolist():
        sel = (trial == t) & torch.isfinite(y) & (y > 0) & (x > 0)
        xs = x[sel].unique()
        if xs.numel() >= 2:
            cells[t] = (xs, torch.stack([y[sel][x[sel] == v].log().mean() for v in xs]))
    return cells


def _local_slopes(cells, grid) -> list:
    out = []
    for x0, x1 in zip(grid[:-1], grid[1:], strict=True):
        vals = []
        for xs, ly in cells.values():
            i, j = (xs == x0).nonzero(), (xs == x1).nonzero()
            if i.numel() and j.numel():
                vals.append(float((ly[j[0, 0]] - ly[i[0, 0]]) / (math.log(x1) - math.log(x0))))
        slope, ci = mean_ci(vals)
        out.append({"x0": x0, "x1": x1, "slope": slope, "ci": ci, "trials": len(vals)})
    return out


def _curvature(cells) -> tuple[float, tuple[float, float]]:
    cs = []
    for xs, ly in cells.values():
        if xs.numel() >= 3:
            u = xs.log() - xs.log().mean()
            A = torch.stack([torch.ones_like(u), u, u * u], dim=1)
            cs.append(float(torch.linalg.solve(A.T @ A, A.T @ ly)[2]))  # normal equations: deterministic
    return mean_ci(cs)


def compare_forms(x, y, trial) -> FormComparison | None:
    """None when fewer than two trials have a slope (or no positive points)."""
    x, y = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (x, y))
    trial = torch.as_tensor(trial).flatten()
    exponent = per_trial_slopes(x, y, trial, log=True)
    keep = torch.isfinite(x) & torch.isfinite(y) & (x > 0) & (y > 0)
    if exponent is None or int(keep.sum()) < 3:
        return None
    aic = _aic(x[keep], y[keep])
    cells = _per_trial_cells(x, y, trial)
    grid = sorted(set(x[keep].tolist()))
    return FormComparison(min(aic, key=aic.get), aic, exponent, _curvature(cells), _local_slopes(cells, grid))
