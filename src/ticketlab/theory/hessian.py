"""Experiment `hessian`: the local convex region around the teacher. Smallest eigenvalue of the empirical loss's
Hessian at W* vs r/N, and an estimate of the radius within which the loss stays strongly convex along rays.

Protocol (ours), noiseless. At W* the residuals vanish and ReLU has no curvature almost everywhere, so the Hessian
is the Gauss-Newton matrix J^T J / (N K^2) over the kept weights (student.hessian_at); lambda_min is reported
times K^2 and also divided by its large-sample value lambda_pop(r) (estimated with N_pop samples), since
restricting to r inputs changes the population Hessian itself. Claim: lambda_min / lambda_pop ≈ 1 - c·sqrt(r/N).

Radius: along M random unit directions U on the mask, the second derivative of the loss along the ray
W* + s·||W*||·U is measured by a central difference of the directional derivative (width h, so the kinks where
activation patterns change are seen, unlike the a.e. Hessian, which is PSD everywhere for ReLU). The radius of a
trial is the smallest relative distance s (grid, interpolated) at which the smallest curvature over its rays
falls below `threshold` times its value at W*. Claim: radius ≈ a·(1 - c·sqrt(r/N)).
"""

import math
from dataclasses import dataclass

import torch

from .checks import memory, positive, teacher_shapes
from .fitting import finite_stats, fit_line
from .plots import figure, spread
from .registry import experiment
from .seeds import stream
from .student import hessian_at
from .teacher import make_teacher, oracle_mask, sample


@dataclass(frozen=True)
class HessianSettings:
    d: int = 100
    K: int = 5
    r_star: int = 10
    rs: tuple[int, ...] = (10, 20, 40, 70, 100)
    Ns: tuple[int, ...] = (1000, 2000, 4000, 8000, 16000)
    N_pop: int = 32000  # large-sample reference for lambda_pop(r)
    trials: int = 10
    directions: int = 8
    radii: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0)
    width: float = 0.02  # relative width h of the curvature's central difference
    threshold: float = 0.5  # radius = where the smallest curvature over the rays falls below this × its value at W*
    chunk: int = 4000  # samples per Hessian accumulation chunk (bounds memory)


def hessian_chunked(W, X, mask, chunk: int) -> torch.Tensor:
    """Same as hessian_at but accumulated over sample chunks so N_pop fits in memory."""
    N = X.shape[1]
    total = None
    for start in range(0, N, chunk):
        part = hessian_at(W, X[:, start:start + chunk], mask) * X[:, start:start + chunk].shape[1]
        total = part if total is None else total + part
    return total / N


def smallest_eigenvalue(W, X, mask, K: int, chunk: int) -> torch.Tensor:
    H = hessian_chunked(W.double(), X.double(), mask, chunk)
    return torch.linalg.eigvalsh(H)[:, 0] * K * K


def directional_slope(W_star, X, U, s: float) -> torch.Tensor:
    """<grad f(W* + s·||W*||·U), U> for M unit directions at once: (T, M). Noiseless: y is the teacher's output."""
    W = W_star.unsqueeze(1) + (s * W_star.flatten(1).norm(dim=1)).view(-1, 1, 1, 1) * U  # (T, M, K, d)
    N, K = X.shape[1], W_star.shape[1]
    y = torch.relu(X @ W_star.transpose(1, 2)).mean(-1)  # (T, N)
    Z = torch.einsum("tnd,tmkd->tmnk", X, W)
    residual = torch.relu(Z).mean(-1) - y.unsqueeze(1)  # (T, M, N)
    grad = torch.einsum("tmn,tmnk,tnd->tmkd", residual, (Z > 0).to(X.dtype), X) / (N * K)
    return (grad * U).flatten(2).sum(-1)


def curvature(W_star, X, U, s: float, h: float) -> torch.Tensor:
    """Second derivative of the loss along each ray at relative distance s, by a central difference of width h:
    unlike the a.e. Hessian it sees the kinks where activation patterns change (negative curvature)."""
    return (directional_slope(W_star, X, U, s + h) - directional_slope(W_star, X, U, s - h)) / (2 * h)


def radius(W_star, X, mask, s_grid, directions: int, h: float, threshold: float, generator):
    """Per trial: the relative distance where the smallest curvature over the rays first drops below `threshold`
    times its value at W* (interpolated on the grid; the grid's end when it never does), and the ratio curve."""
    T = W_star.shape[0]
    U = torch.randn((T, directions, *W_star.shape[1:]), generator=generator, dtype=X.dtype) * mask.unsqueeze(1)
    U = U / U.flatten(2).norm(dim=-1).view(T, directions, 1, 1)
    at_teacher = curvature(W_star, X, U, 0.0, h)
    ratios = torch.stack([(curvature(W_star, X, U, s, h) / at_teacher).amin(1) for s in s_grid])  # (S, T)
    out = torch.full((T,), float(s_grid[-1]))
    for t in range(T):  # T scalars, not samples: each trial's first crossing
        below = (ratios[:, t] < threshold).nonzero()
        if below.numel():
            i = int(below[0])
            if i == 0:
                out[t] = float(s_grid[0])
            else:
                r0, r1 = float(ratios[i - 1, t]), float(ratios[i, t])
                out[t] = s_grid[i - 1] + (r0 - threshold) / (r0 - r1) * (s_grid[i] - s_grid[i - 1])
    return out, ratios


@experiment("hessian", "the pruned network's convex region is larger and steeper: lambda_min and radius "
            "≈ 1 - c·sqrt(r/N)", HessianSettings,
            quick={"d": 40, "r_star": 5, "rs": (5, 10, 20), "Ns": (500, 1000, 2000), "N_pop": 8000, "trials": 3,
                   "directions": 4, "radii": (0.05, 0.2, 0.5, 1.0)})
def run(s: HessianSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    teacher_shapes(s.d, s.K, s.r_star, rs=s.rs, Ns=(*s.Ns, s.N_pop))
    positive("trials", s.trials)
    positive("directions", s.directions)
    positive("chunk", s.chunk)
    p = s.K * max(s.rs)
    memory("hessian", 8 * s.trials * (s.N_pop * s.d + s.chunk * p + 2 * p * p)
           + 4 * s.trials * s.directions * max(s.Ns) * s.K * 3, max_bytes)
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(seed, "teacher"), dtype=torch.float64)
    X_pop, _ = sample(teacher, s.N_pop, 0.0, stream(seed, "data", "pop"))
    rows, curves = [], []
    for r in s.rs:
        mask = oracle_mask(teacher, r, stream(seed, "mask", r))
        lam_pop = smallest_eigenvalue(teacher.weights, X_pop, mask, s.K, s.chunk)
        for N in s.Ns:
            X, _ = sample(teacher, N, 0.0, stream(seed, "data", N))
            lam = smallest_eigenvalue(teacher.weights, X, mask, s.K, s.chunk)
            rad, ratios = radius(teacher.weights.float(), X.float(), mask, s.radii, s.directions, s.width,
                                 s.threshold, stream(seed, "dirs", r, N))
            curves += [{"r": r, "N": N, "distance": dist, "median_min_curvature_ratio": float(ratios[i].median()),
                        "lowest_min_curvature_ratio": float(ratios[i].min())} for i, dist in enumerate(s.radii)]
            rows += [{"r": r, "N": N, "trial": t, "r_over_N": r / N, "sqrt_r_over_N": math.sqrt(r / N),
                      "lambda_min_K2": float(lam[t]), "lambda_pop_K2": float(lam_pop[t]),
                      "lambda_ratio": float(lam[t] / lam_pop[t]), "radius": float(rad[t])} for t in range(s.trials)]
        progress(f"  r={r}: lambda_pop·K² {float(lam_pop.mean()):.3f}; lambda_min/lambda_pop " + " ".join(
            f"{_stat(rows, r, N, 'lambda_ratio')['median']:.3f}" for N in s.Ns) + "; radius " + " ".join(
            f"{_stat(rows, r, N, 'radius')['median']:.2f}" for N in s.Ns))
    out.csv("trials.csv", rows)
    out.csv("curvature_along_rays.csv", curves)
    fits, lines = {}, []
    capped = sum(1 for row in rows if row["radius"] >= s.radii[-1])
    for key, label in (("lambda_ratio", "lambda_min/lambda_pop"), ("radius", "radius")):
        if key == "radius" and 2 * capped > len(rows):  # mostly lower bounds: a line through them means nothing
            fits[f"{label} = a + slope·sqrt(r/N)"] = None
            lines.append("radius: not fitted, most trials never left the convex region on the grid")
            continue
        fit = fit_line([row["sqrt_r_over_N"] for row in rows], [row[key] for row in rows])
        fits[f"{label} = a + slope·sqrt(r/N)"] = fit.to_dict() if fit else None
        if fit:
            lines.append(f"{fit.describe('sqrt(r/N)', label)}; c = -slope/intercept = {-fit.slope / fit.intercept:.3g}")
    lines.append(f"radius: {capped} of {len(rows)} trials never dropped below {s.threshold} × the curvature at W* "
                 f"within relative distance {s.radii[-1]} (recorded as {s.radii[-1]}, a lower bound); lowest "
                 f"curvature ratio seen on any ray: {min(c['lowest_min_curvature_ratio'] for c in curves):.3f}")
    draw(s, rows, fits, out)
    return {"fits": fits, "lines": lines, "nonfinite_trials": sum(1 for row in rows if not math.isfinite(
        row["lambda_min_K2"]))}


def _stat(rows, r, N, key) -> dict:
    st = finite_stats(torch.tensor([row[key] for row in rows if row["r"] == r and row["N"] == N]))
    return st if st["median"] is not None else {**st, "median": float("nan")}


def draw(s, rows, fits, out) -> None:
    fig, axes = figure(ncols=3, width=3.5, height=3.4)
    for r in s.rs:
        xs = [r / N for N in s.Ns]
        spread(axes[0], xs, [_stat(rows, r, N, "lambda_min_K2") for N in s.Ns], f"r={r}")
        sx = [math.sqrt(r / N) for N in s.Ns]
        spread(axes[1], sx, [_stat(rows, r, N, "lambda_ratio") for N in s.Ns], f"r={r}")
        spread(axes[2], sx, [_stat(rows, r, N, "radius") for N in s.Ns], f"r={r}")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("r/N")
    axes[0].set_ylabel("λ_min(Hessian at W*) · K²")
    axes[0].legend()
    for ax, key, label in ((axes[1], "lambda_min/lambda_pop", "λ_min / λ_pop(r)"), (axes[2], "radius", "radius")):
        fit = fits.get(f"{key} = a + slope·sqrt(r/N)")
        if fit:
            xs = torch.tensor([0.0, max(row["sqrt_r_over_N"] for row in rows)])
            ax.plot(xs, fit["intercept"] + fit["slope"] * xs, "k--", lw=1,
                    label=f"fit {fit['intercept']:.2f} {fit['slope']:+.2f}·sqrt(r/N)")
        ax.set_xlabel("sqrt(r/N)")
        ax.set_ylabel(label + (" (relative distance)" if key == "radius" else ""))
        ax.legend(fontsize=7)
    axes[1].set_title(f"d={s.d}, K={s.K}, r*={s.r_star}, {s.trials} trials; median, IQR")
    out.png("hessian.png", fig)
