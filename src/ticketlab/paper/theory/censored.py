"""Fits for right-censored values: a value recorded at its cap means "at least the cap" (e.g. a convex-region
radius that never ended within the probed distances). Least squares on such values is biased towards flat.

`tobit`: maximum likelihood for y* = a + b·x + σ·e, e ~ N(0, 1), observed min(y*, cap) (Tobin 1958), by Newton's
method on (a, b, log σ) with autograd; Wald 95% intervals from the observed information. `median_line`: the
median of each x group (a median is unaffected by censoring while under half the group is censored), then a line
through those medians; groups censored at 50% or more are left out and counted.
"""

import math
from dataclasses import asdict, dataclass

import torch

from ticketlab.paper.theory.fitting import fit_line
from ticketlab.paper.theory.trialfit import t_quantile


@dataclass(frozen=True)
class CensoredFit:
    slope: float
    intercept: float
    sigma: float
    slope_ci: tuple[float, float]
    n: int
    censored: int
    loglik: float
    method: str = "Tobit (censored normal likelihood)"

    @property
    def censored_fraction(self) -> float:
        return self.censored / self.n if self.n else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "censored_fraction": self.censored_fraction}


def _loglik(params: torch.Tensor, x, y, censored) -> torch.Tensor:
    a, b, log_sigma = params
    sigma = log_sigma.exp()
    z = (y - a - b * x) / sigma
    normal = torch.distributions.Normal(torch.zeros((), dtype=x.dtype), torch.ones((), dtype=x.dtype))
    exact = normal.log_prob(z) - log_sigma
    above = torch.special.log_ndtr(-z)  # log P(y* >= cap), z at the cap
    return torch.where(censored, above, exact).sum()


def tobit(x, y, cap, steps: int = 100) -> CensoredFit | None:
    """Right-censored linear fit; `cap` is a number or one cap per point (a point is censored when y >= cap).
    None with fewer than 3 uncensored points or constant x."""
    x, y = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (x, y))
    cap = torch.as_tensor(cap, dtype=torch.float64).expand_as(y)
    keep = torch.isfinite(x) & torch.isfinite(y)
    x, y, cap = x[keep], y[keep], cap[keep]
    censored = y >= cap
    exact = ~censored
    if int(exact.sum()) < 3 or float(x.std()) == 0.0:
        return None
    start = fit_line(x[exact], y[exact])
    resid = y[exact] - (start.slope * x[exact] + start.intercept) if start else y[exact] - y[exact].mean()
    params = torch.tensor([start.intercept if start else float(y[exact].mean()), start.slope if start else 0.0,
                           math.log(max(float(resid.std()), 1e-6))], dtype=torch.float64)
    y = torch.where(censored, cap, y)

    def f(p):
        return _loglik(p, x, y, censored)

    for _ in range(steps):
        grad = torch.autograd.functional.jacobian(f, params)
        hess = torch.autograd.functional.hessian(f, params)
        step = torch.linalg.solve(hess - 1e-9 * torch.eye(3, dtype=torch.float64), grad)
        scale = 1.0
        while scale > 1e-4 and not float(f(params - scale * step)) >= float(f(params)) - 1e-12:
            scale /= 2  # damped Newton: never decrease the likelihood
        params = params - scale * step
        if float(step.abs().max()) * scale < 1e-10:
            break
    cov = torch.linalg.inv(-torch.autograd.functional.hessian(f, params))
    half = t_quantile(max(int(exact.sum()) - 3, 1)) * math.sqrt(max(float(cov[1, 1]), 0.0))
    a, b, log_sigma = params.tolist()
    return CensoredFit(b, a, math.exp(log_sigma), (b - half, b + half), int(y.numel()), int(censored.sum()),
                       float(f(params)))


def median_line(x, y, cap) -> dict:
    """Line through the per-x medians of the groups censored below 50%; the groups used and left out."""
    x, y = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (x, y))
    cap = torch.as_tensor(cap, dtype=torch.float64).expand_as(y)
    used, dropped = [], []
    for value in x.unique():
        sel = (x == value) & torch.isfinite(y)
        frac = float((y[sel] >= cap[sel]).double().mean())
        (used if frac < 0.5 else dropped).append((float(value), float(y[sel].median()), frac))
    fit = fit_line([u[0] for u in used], [u[1] for u in used]) if len(used) >= 3 else None
    return {"fit": fit.to_dict() if fit else None, "medians": used, "groups_censored_half_or_more": len(dropped)}
