"""Least-squares fits with 95% confidence intervals: straight lines, log-log slopes, phase-boundary crossings.

Intervals use Student's t quantile from scipy when it is installed, else a percentile bootstrap over the fitted
points (2000 resamples, seeded); `Fit.method` says which was used. Non-finite points are dropped before fitting
and counted in `Fit.dropped`, so a diverged trial can never leak into a fit.
"""

import math
from dataclasses import asdict, dataclass

import torch

LEVEL = 0.95


@dataclass(frozen=True)
class Fit:
    slope: float
    intercept: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    n: int
    r2: float
    method: str
    dropped: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self, x: str = "x", y: str = "y", digits: int = 3) -> str:
        f = f"{{:.{digits}g}}"
        lo, hi = self.slope_ci
        ilo, ihi = self.intercept_ci
        return (f"{y} = {f.format(self.slope)}·{x} + {f.format(self.intercept)}   slope 95% CI [{f.format(lo)}, "
                f"{f.format(hi)}], intercept 95% CI [{f.format(ilo)}, {f.format(ihi)}]  (n={self.n}, "
                f"R²={self.r2:.3f}, {self.method})")


def t_quantile(dof: int) -> float | None:
    try:
        from scipy.stats import t
    except ImportError:
        return None
    return float(t.ppf(0.5 + LEVEL / 2, dof))


def _ols(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slope and intercept along the last axis (batched for the bootstrap)."""
    xm, ym = x.mean(-1, keepdim=True), y.mean(-1, keepdim=True)
    slope = ((x - xm) * (y - ym)).sum(-1) / (x - xm).pow(2).sum(-1).clamp_min(1e-300)
    return slope, ym.squeeze(-1) - slope * xm.squeeze(-1)


def fit_line(x, y, seed: int = 0) -> Fit | None:
    """y = slope * x + intercept by least squares; None when fewer than 3 finite points or x is constant."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    y = torch.as_tensor(y, dtype=torch.float64).flatten()
    keep = torch.isfinite(x) & torch.isfinite(y)
    dropped = int((~keep).sum())
    x, y = x[keep], y[keep]
    n = x.numel()
    if n < 3 or float(x.std()) == 0.0:
        return None
    slope, intercept = _ols(x, y)
    residual = y - (slope * x + intercept)
    ss_res, ss_tot = float(residual.pow(2).sum()), float((y - y.mean()).pow(2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    q = t_quantile(n - 2)
    if q is not None:
        sigma2 = ss_res / (n - 2)
        sxx = float((x - x.mean()).pow(2).sum())
        se_slope = math.sqrt(sigma2 / sxx)
        se_intercept = math.sqrt(sigma2 * (1.0 / n + float(x.mean()) ** 2 / sxx))
        s, b = float(slope), float(intercept)
        return Fit(s, b, (s - q * se_slope, s + q * se_slope), (b - q * se_intercept, b + q * se_intercept),
                   n, r2, "t", dropped)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(n, (2000, n), generator=g)
    slopes, intercepts = _ols(x[idx], y[idx])
    ok = torch.isfinite(slopes)
    lo, hi = (1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2
    sq = torch.quantile(slopes[ok], torch.tensor([lo, hi], dtype=torch.float64)).tolist()
    iq = torch.quantile(intercepts[ok], torch.tensor([lo, hi], dtype=torch.float64)).tolist()
    return Fit(float(slope), float(intercept), tuple(sq), tuple(iq), n, r2, "bootstrap", dropped)


def fit_loglog(x, y, seed: int = 0) -> Fit | None:
    """log y = slope * log x + intercept (points with x <= 0 or y <= 0 are dropped and counted)."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    y = torch.as_tensor(y, dtype=torch.float64).flatten()
    return fit_line(torch.where(x > 0, x, torch.nan).log(), torch.where(y > 0, y, torch.nan).log(), seed)


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log y on log x over the finite positive points (nan with fewer than 2)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if math.isfinite(y) and y > 0]
    if len(pts) < 2:
        return float("nan")
    x = torch.tensor([p[0] for p in pts], dtype=torch.float64)
    y = torch.tensor([p[1] for p in pts], dtype=torch.float64)
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / xc.pow(2).sum())


def crossing(xs, rates, level: float = 0.5) -> float:
    """Smallest x where a (mostly increasing) success-rate curve reaches `level`, linearly interpolated between the
    last grid point below and the first at or above it; nan when it never does or already starts above."""
    xs, rates = list(map(float, xs)), list(map(float, rates))
    for i, rate in enumerate(rates):
        if rate >= level:
            if i == 0:
                return float("nan")
            x0, x1, r0, r1 = xs[i - 1], xs[i], rates[i - 1], rate
            return x0 + (level - r0) * (x1 - x0) / (r1 - r0)
    return float("nan")


def finite_stats(values: torch.Tensor, finite: torch.Tensor | None = None) -> dict:
    """Mean, std, quartiles over the finite entries, and how many were excluded (never averaged in)."""
    values = values.double().flatten()
    ok = torch.isfinite(values) if finite is None else (finite.flatten() & torch.isfinite(values))
    v = values[ok]
    if v.numel() == 0:
        return {"mean": None, "std": None, "q25": None, "median": None, "q75": None, "n": 0,
                "excluded": int((~ok).sum())}
    q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
    std = float(v.std()) if v.numel() > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "q25": q[0], "median": q[1], "q75": q[2], "n": int(v.numel()),
            "excluded": int((~ok).sum())}
