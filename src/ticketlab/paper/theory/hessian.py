"""Experiment `hessian`: the local convex region around the teacher. Smallest eigenvalue of the empirical loss's
Hessian at W* vs r/N, and an estimate of the radius within which it stays positive definite.

Protocol (ours), noiseless. At W* the residuals vanish and ReLU has no curvature almost everywhere, so the Hessian
is the Gauss-Newton matrix J^T J / (N K^2) over the kept weights (student.hessian_at); lambda_min is reported
times K^2 and also divided by its large-sample value lambda_pop(r) (estimated with N_pop samples), since
restricting to r inputs changes the population Hessian itself. Claim: lambda_min / lambda_pop ≈ 1 - c·sqrt(r/N).

Radius: away from W* the a.e. Hessian is still PSD (ReLU), so we use the smoothed Hessian (student.smoothed_hessian:
the kinks' Dirac mass replaced by a band of half-width `width`·||w_j||), whose quadratic form matches a finite
difference of the gradient. Along M random unit directions U on the mask we compute its lambda_min at
W* + s·||W*||·U on a grid of s; a trial's radius is the smallest s at which some ray's lambda_min reaches 0
(interpolated; the grid's end, a lower bound, when none does). Claim: the radius shrinks as sqrt(r/N) grows.

Variants: everything above runs on oracle masks (the control). With "found" in `variants`, lambda_min is also
measured on masks found by one-shot magnitude pruning of a dense student trained from a random start
(hessian_found.py; verdict in hessian_found_fit.py), recording whether each covers the teacher's support. The
radius probe stays oracle-only: on a covering mask W*⊙mask = W*, on a missing one W*⊙mask is no minimiser.
"""

import math
from dataclasses import dataclass

import torch

from ticketlab.errors import TicketlabError
from ticketlab.paper.theory.checks import memory, positive, teacher_shapes
from ticketlab.paper.theory.fitting import finite_stats
from ticketlab.paper.theory.hessian_fit import summarise
from ticketlab.paper.theory.hessian_found import found_rows
from ticketlab.paper.theory.hessian_found_fit import found_verdict
from ticketlab.paper.theory.hessian_matrix import smallest_eigenvalue
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.student import kept_inputs, smoothed_hessian
from ticketlab.paper.theory.teacher import make_teacher, oracle_mask, sample


@dataclass(frozen=True)
class HessianSettings:
    d: int = 100
    K: int = 5
    r_star: int = 10
    rs: tuple[int, ...] = (10, 20, 40, 70, 100)
    Ns: tuple[int, ...] = (1000, 2000, 4000, 8000, 16000)
    N_pop: int = 32000  # large-sample reference for lambda_pop(r)
    trials: int = 10
    radius_rs: tuple[int, ...] = (10, 20, 40)  # r of the radius probe (a Hessian per point: K·r ≤ 200 keeps it fast)
    directions: int = 4
    radii: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)
    width: float = 0.05  # half-width of the kink band, relative to ||w_j||
    chunk: int = 4000  # samples per Hessian accumulation chunk (bounds memory)
    resamples: int = 200  # bootstrap over trials of the censored radius fit
    variants: tuple[str, ...] = ("oracle", "found")  # oracle (the control, always run) and found (hessian_found.py)
    dense_lr: float = 0.5  # the found variant's dense student: step in units of K², heavy ball, iterations
    dense_momentum: float = 0.9
    dense_iters: int = 800


def smallest_eigenvalues_along_rays(teacher, X, y, mask, s_grid, directions: int, width: float, generator):
    """lambda_min of the smoothed Hessian (student.smoothed_hessian) at W* + s·||W*||·U for M random unit
    directions U on the mask and every s of the grid: (S, T, M), each divided by its value at W*."""
    W_star = teacher.weights
    T = W_star.shape[0]
    U = torch.randn((directions, *W_star.shape), generator=generator, dtype=X.dtype) * mask
    U = U / U.flatten(2).norm(dim=-1).view(directions, T, 1, 1)
    scale = W_star.flatten(1).norm(dim=1).view(T, 1, 1)
    Xk = kept_inputs(X, mask)  # the same for every point: gathered once

    def lam(W):
        return torch.linalg.eigvalsh(smoothed_hessian(W, X, y, mask, width, Xk).double())[:, 0]

    at_teacher = lam(W_star)
    return torch.stack([torch.stack([lam(W_star + s * scale * u) for u in U], dim=1) for s in s_grid]) / \
        at_teacher.view(1, T, 1)


def radius(ratios: torch.Tensor, s_grid) -> torch.Tensor:
    """Per trial: the smallest distance at which some ray's lambda_min reaches 0 (linear interpolation on the
    grid), or the grid's end when every ray stays positive definite (a lower bound)."""
    worst = ratios.amin(2)  # (S, T): the least convex ray at each distance
    out = torch.full((worst.shape[1],), float(s_grid[-1]))
    for t in range(worst.shape[1]):  # T scalars, not samples: each trial's first crossing
        below = (worst[:, t] <= 0).nonzero()
        if below.numel():
            i = int(below[0])
            r0, r1 = (1.0, float(worst[0, t])) if i == 0 else (float(worst[i - 1, t]), float(worst[i, t]))
            s0 = 0.0 if i == 0 else s_grid[i - 1]
            out[t] = s0 + r0 / (r0 - r1) * (s_grid[i] - s0)
    return out


@experiment("hessian", "the pruned network's convex region is larger and steeper: lambda_min and radius "
            "≈ 1 - c·sqrt(r/N)", HessianSettings,
            quick={"d": 40, "r_star": 5, "rs": (5, 10, 20), "Ns": (500, 1000, 2000), "N_pop": 8000, "trials": 3,
                   "radius_rs": (5, 20), "directions": 2, "radii": (0.2, 0.5, 1.0),
                   "resamples": 40, "dense_iters": 400})
def run(s: HessianSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    teacher_shapes(s.d, s.K, s.r_star, rs=s.rs, Ns=(*s.Ns, s.N_pop))
    positive("trials", s.trials)
    positive("directions", s.directions)
    positive("chunk", s.chunk)
    if not set(s.radius_rs) <= set(s.rs):
        raise TicketlabError(f"radius_rs {s.radius_rs} must be a subset of rs {s.rs}")
    if "oracle" not in s.variants or not set(s.variants) <= {"oracle", "found"}:
        raise TicketlabError(f"hessian variants {s.variants} must be ('oracle',) or ('oracle', 'found'): the "
                             f"oracle control always runs")
    p, q = s.K * max(s.rs), s.K * max(s.radius_rs)
    p = s.K * s.d if "found" in s.variants else p  # the found variant builds the dense Hessian
    memory("hessian", 8 * s.trials * (s.N_pop * s.d + s.chunk * p + 2 * p * p)
           + 4 * s.trials * max(s.Ns) * (2 * q + 3 * s.K) + 8 * s.trials * q * q, max_bytes)
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(seed, "teacher"), dtype=torch.float64)
    X_pop, _ = sample(teacher, s.N_pop, 0.0, stream(seed, "data", "pop"))
    rows, curves = [], []
    for r in s.rs:
        mask = oracle_mask(teacher, r, stream(seed, "mask", r))
        lam_pop = smallest_eigenvalue(teacher.weights, X_pop, mask, s.K, s.chunk)
        for N in s.Ns:
            X, y = sample(teacher, N, 0.0, stream(seed, "data", N))
            lam = smallest_eigenvalue(teacher.weights, X, mask, s.K, s.chunk)
            rad = torch.full((s.trials,), float("nan"))
            if r in s.radius_rs:
                ratios = smallest_eigenvalues_along_rays(_single(teacher), X.float(), y.float(), mask, s.radii,
                                                         s.directions, s.width, stream(seed, "dirs", r, N))
                rad = radius(ratios, s.radii)
                curves += [{"r": r, "N": N, "distance": dist, "median_lambda_ratio": float(ratios[i].median()),
                            "rays_not_positive_definite": float((ratios[i] <= 0).double().mean())}
                           for i, dist in enumerate(s.radii)]
            rows += [{"r": r, "N": N, "trial": t, "r_over_N": r / N, "sqrt_r_over_N": math.sqrt(r / N),
                      "lambda_min_K2": float(lam[t]), "lambda_pop_K2": float(lam_pop[t]),
                      "lambda_ratio": float(lam[t] / lam_pop[t]), "radius": float(rad[t])} for t in range(s.trials)]
        progress(f"  r={r}: lambda_pop·K² {float(lam_pop.mean()):.3f}; lambda_min/lambda_pop " + " ".join(
            f"{_stat(rows, r, N, 'lambda_ratio')['median']:.3f}" for N in s.Ns) + (("; radius " + " ".join(
            f"{_stat(rows, r, N, 'radius')['median']:.2f}" for N in s.Ns)) if r in s.radius_rs else ""))
    out.csv("trials.csv", rows)
    out.csv("lambda_along_rays.csv", curves)
    found = found_rows(s, teacher, X_pop, seed, progress) if "found" in s.variants else []
    if found:
        out.csv("found_trials.csv", found)
    fits, lines, verdicts = summarise(s, rows, seed)
    if found:
        verdicts.append(found_verdict(rows, found, lines, fits))
    draw(s, rows, found, fits, out)
    return {"fits": fits, "lines": lines, "verdicts": verdicts,
            "nonfinite_trials": sum(1 for row in rows if not math.isfinite(row["lambda_min_K2"]))}


def _single(teacher):
    """The teacher in float32: the ray probe builds many Hessians, float32 is precise enough for their sign."""
    return type(teacher)(teacher.weights.float(), teacher.support)


def _stat(rows, r, N, key) -> dict:
    st = finite_stats(torch.tensor([row[key] for row in rows if row["r"] == r and row["N"] == N]))
    return st if st["median"] is not None else {**st, "median": float("nan")}


def draw(s, rows, found, fits, out) -> None:
    fig, axes = figure(ncols=4 if found else 3, width=3.5, height=3.4)
    for r in s.rs:
        xs = [r / N for N in s.Ns]
        spread(axes[0], xs, [_stat(rows, r, N, "lambda_min_K2") for N in s.Ns], f"r={r}")
        sx = [math.sqrt(r / N) for N in s.Ns]
        spread(axes[1], sx, [_stat(rows, r, N, "lambda_ratio") for N in s.Ns], f"r={r}")
        if r in s.radius_rs:
            spread(axes[2], sx, [_stat(rows, r, N, "radius") for N in s.Ns], f"r={r}")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("r/N")
    axes[0].set_ylabel("λ_min(Hessian at W*) · K²")
    axes[0].legend()
    panels = ((axes[1], "lambda_min/lambda_pop", "lambda_ratio", "λ_min / λ_pop(r)"),
              (axes[2], "radius", "radius", "radius (relative distance)"))
    for ax, fitted, column, ylabel in panels:
        _fit_line(ax, fits.get(f"{fitted} = a + slope·sqrt(r/N)"), rows, column)
        ax.set_xlabel("sqrt(r/N)")
        ax.set_ylabel(ylabel)
    axes[2].axhline(s.radii[-1], color="0.6", ls=":", lw=1, label="grid end: censored (lower bounds)")
    axes[2].set_ylim(bottom=0)
    for ax in axes[1:3]:
        ax.legend(fontsize=7)
    axes[1].set_title(f"oracle masks (control): d={s.d}, K={s.K}, r*={s.r_star}, {s.trials} trials; median, IQR",
                      fontsize=8)
    if found:
        _draw_found(s, axes[3], found, fits)
    out.png("hessian.png", fig)


def _fit_line(ax, fit, rows, column, label="fit") -> None:
    if fit:  # drawn over the probed range only, and never below zero
        shown = [row["sqrt_r_over_N"] for row in rows if math.isfinite(row[column])]
        xs = torch.linspace(0.0 if column == "lambda_ratio" else min(shown), max(shown), 50)
        ys = fit["intercept"] + fit["slope"] * xs
        ax.plot(xs[ys >= 0], ys[ys >= 0], "k--", lw=1,
                label=f"{label} {fit['intercept']:.2f} {fit['slope']:+.2f}·sqrt(r/N)")


def _draw_found(s, ax, found, fits) -> None:
    """λ_min/λ_pop on the found masks; hollow markers: cells where some trial's mask misses the support."""
    for r in s.rs:
        sx = [math.sqrt(r / N) for N in s.Ns]
        spread(ax, sx, [_stat(found, r, N, "lambda_ratio") for N in s.Ns], f"r={r}")
        miss = [(x, _stat(found, r, N, "lambda_ratio")["median"]) for x, N in zip(sx, s.Ns, strict=True)
                if not all(row["covers_support"] for row in found if row["r"] == r and row["N"] == N)]
        if miss:
            ax.scatter(*zip(*miss, strict=True), s=40, facecolors="none", edgecolors="k", lw=0.8)
    _fit_line(ax, fits.get("lambda_min/lambda_pop = a + slope·sqrt(r/N)"), found, "lambda_ratio", "oracle fit")
    ax.scatter([], [], s=40, facecolors="none", edgecolors="k", lw=0.8, label="some masks miss the support")
    covering = sum(row["covers_support"] for row in found)
    ax.set_title(f"found masks: {covering}/{len(found)} cover the support", fontsize=8)
    ax.set_xlabel("sqrt(r/N)")
    ax.set_ylabel("λ_min / λ_pop on the found mask")
    ax.legend(fontsize=7)
