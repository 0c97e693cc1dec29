"""Fits for right-censored values: a value recorded at its cap means "at least the cap" (e.g. a convex-region
radius that never ended within the probed distances). Least squares on such values is biased towards flat.

`tobit`: maximum likelihood for y* = a + b·x + σ·e, e ~ N(0, 1), observed min(y*, cap) (Tobin 1958), by damped
Newton steps with autograd in Olsen's parametrisation (a/σ, b/σ, 1/σ), where the log-likelihood is concave, so
the maximum found is the global one; Wald 95% interval for b by the delta method. `median_line`: the
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
    """Olsen's parametrisation (α, β, h) = (a/σ, b/σ, 1/σ), in which the Tobit log-likelihood is concave."""
    alpha, beta, h = params
    z = h * y - alpha - beta * x  # (y - a - b x) / σ; at the cap for the censored points
    exact = h.log() - 0.5 * z * z - 0.5 * math.log(2 * math.pi)
    return torch.where(censored, torch.special.log_ndtr(-z), exact).sum()


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
    a, b = (start.intercept, start.slope) if start else (float(y[exact].mean()), 0.0)
    sigma = max(float((y[exact] - a - b * x[exact]).std()), 1e-6)
    params = torch.tensor([a / sigma, b / sigma, 1 / sigma], dtype=torch.float64)
    y = torch.where(censored, cap, y)

    def f(p):
        return _loglik(p, x, y, censored) if float(p[2].detach()) > 0 else torch.tensor(-math.inf, dtype=torch.float64)

    for _ in range(steps):
        grad = torch.autograd.functional.jacobian(f, params)
        hess = torch.autograd.functional.hessian(f, params)
        step = torch.linalg.solve(hess - 1e-9 * torch.eye(3, dtype=torch.float64), grad)
        scale, before = 1.0, float(f(params))
        while scale > 1e-8 and not float(f(params - scale * step)) >= before:
            scale /= 2  # damped Newton on a concave function: an ascent step always exists
        if scale <= 1e-8:
            break
        params = params - scale * step
        if float(step.abs().max()) * scale < 1e-10:
            break
    alpha, beta, h = params.tolist()
    # Wald interval for b = β/h by the delta method on the observed information.
    cov = torch.linalg.inv(-torch.autograd.functional.hessian(f, params))
    J = torch.tensor([0.0, 1 / h, -beta / h**2], dtype=torch.float64)
    se = math.sqrt(max(float(J @ cov @ J), 0.0))
    half = t_quantile(max(int(exact.sum()) - 3, 1)) * se
    b = beta / h
    return CensoredFit(b, alpha / h, 1 / h, (b - half, b + half), int(y.numel()), int(censored.sum()),
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
