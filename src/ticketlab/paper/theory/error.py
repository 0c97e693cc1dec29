"""Experiment `error`: final relative error ||W - W*||_F / ||W*||_F vs r at fixed N and sigma, and vs N at fixed
r, on log-log axes with fitted slopes and 95% CIs. Claim: error ∝ sqrt(r/N), i.e. slope +1/2 in r, -1/2 in N.

Protocol (ours): noisy labels (each sigma in `sigmas`), oracle masks, start at relative distance delta, heavy-ball
GD until the weights move less than stall_tol (relative) per 10 iterations (the empirical minimiser near W*). Same
teacher and samples across r (paired). Slopes are fitted on every finite trial (not on cell means).
"""

from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import memory, nonnegative, positive, teacher_shapes
from ticketlab.paper.theory.fitting import finite_stats, fit_loglog
from ticketlab.paper.theory.init import near_teacher
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.teacher import make_teacher, oracle_mask, sample, sample_bytes
from ticketlab.paper.theory.trainer import TrainSettings, train


@dataclass(frozen=True)
class ErrorSettings:
    d: int = 100
    K: int = 5
    r_star: int = 10
    sigmas: tuple[float, ...] = (0.01, 0.1)
    N_fixed: int = 4000  # N of the error-vs-r sweep
    rs: tuple[int, ...] = (10, 15, 20, 30, 40, 50, 70, 100)
    r_fixed: int = 20  # r of the error-vs-N sweep
    Ns: tuple[int, ...] = (500, 1000, 2000, 4000, 8000)
    trials: int = 12
    delta: float = 0.3
    lr: float = 0.5  # in units of K²
    momentum: float = 0.9
    max_iters: int = 1500
    stall_tol: float = 1e-6


def run_cells(s, teacher, rs, N: int, sigma: float, seed: int):
    """Final relative errors (T, len(rs)) and finiteness for every r at one N: the learners of a trial share its
    samples, so all trials and all r are one batched computation (student.forward's groups)."""
    X, y = sample(teacher, N, sigma, stream(seed, "data", N, sigma))
    masks = [oracle_mask(teacher, r, stream(seed, "mask", r)) for r in rs]
    starts = [near_teacher(teacher.weights, m, s.delta, stream(seed, "init", r, N)) for r, m in zip(rs, masks,
                                                                                                     strict=True)]
    T, G = teacher.trials, len(rs)
    stacked = lambda ts: torch.stack(ts, dim=1).reshape(T * G, *ts[0].shape[1:])  # noqa: E731  learner t·G + g
    settings = TrainSettings(lr=s.lr * s.K**2, momentum=s.momentum, max_iters=s.max_iters, stall_tol=s.stall_tol)
    res = train(stacked(starts), stacked(masks), X, y, settings, teacher.weights.repeat_interleave(G, dim=0))
    return res.final_error.view(T, G), res.finite.view(T, G), res.iterations


@experiment("error", "generalisation error ∝ sqrt(r/N): log-log slope +1/2 in r, -1/2 in N", ErrorSettings,
            quick={"d": 40, "r_star": 5, "rs": (5, 10, 20), "Ns": (400, 800, 1600), "N_fixed": 1600,
                   "r_fixed": 10, "trials": 4, "max_iters": 400, "sigmas": (0.1,)})
def run(s: ErrorSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    teacher_shapes(s.d, s.K, s.r_star, rs=(*s.rs, s.r_fixed), Ns=(*s.Ns, s.N_fixed))
    positive("trials", s.trials)
    nonnegative("delta", s.delta)
    for sigma in s.sigmas:
        nonnegative("sigma (label noise)", sigma)
    memory("error sweep", max(sample_bytes(s.trials, max(s.Ns), s.d, s.K),
                              sample_bytes(s.trials, s.N_fixed, s.d, s.K * len(s.rs))), max_bytes)
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(seed, "teacher"))
    rows, nonfinite = [], 0
    sweeps = {"r": [(tuple(s.rs), s.N_fixed)], "N": [((s.r_fixed,), N) for N in s.Ns]}
    for sigma in s.sigmas:
        for sweep, calls in sweeps.items():
            for rs, N in calls:
                error, finite, iterations = run_cells(s, teacher, rs, N, sigma, seed)
                nonfinite += int((~finite).sum())
                rows += [{"sweep": sweep, "sigma": sigma, "r": r, "N": N, "trial": t, "finite": bool(finite[t, g]),
                          "final_error": float(error[t, g]), "iterations": iterations}
                         for g, r in enumerate(rs) for t in range(s.trials)]
            cells = [(r, N) for rs, N in calls for r in rs]
            progress(f"  sigma={sigma} vs {sweep}: median error " + " ".join(
                f"{_stats(rows, sweep, sigma, r, N)['median']:.3g}" for r, N in cells))
    out.csv("trials.csv", rows)
    fits, lines = {}, []
    for sigma in s.sigmas:
        for sweep, claim in (("r", 0.5), ("N", -0.5)):
            pts = [row for row in rows if row["sweep"] == sweep and row["sigma"] == sigma and row["finite"]]
            fit = fit_loglog([p[sweep] for p in pts], [p["final_error"] for p in pts])
            key = f"sigma={sigma}: log error vs log {sweep}"
            fits[key] = fit.to_dict() if fit else None
            if fit:
                lo, hi = fit.slope_ci
                verdict = "contains" if lo <= claim <= hi else "excludes"
                lines.append(f"sigma={sigma}, error vs {sweep}: slope {fit.slope:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] "
                             f"({verdict} the claimed {claim:+.1f}; n={fit.n}, R²={fit.r2:.3f})")
    draw(s, rows, fits, out)
    return {"fits": fits, "lines": lines, "nonfinite_trials": nonfinite}


def _stats(rows, sweep, sigma, r, N) -> dict:
    v = torch.tensor([row["final_error"] for row in rows if row["sweep"] == sweep and row["sigma"] == sigma
                      and row["r"] == r and row["N"] == N and row["finite"]])
    st = finite_stats(v)
    return st if st["median"] is not None else {**st, "median": float("nan")}


def draw(s, rows, fits, out) -> None:
    fig, axes = figure(ncols=2, width=4.4, height=3.6)
    for ax, sweep in zip(axes, ("r", "N"), strict=True):
        xs = list(s.rs) if sweep == "r" else list(s.Ns)
        for sigma in s.sigmas:
            cells = [(x, s.N_fixed) if sweep == "r" else (s.r_fixed, x) for x in xs]
            spread(ax, xs, [_stats(rows, sweep, sigma, r, N) for r, N in cells], f"σ={sigma}")
            fit = fits.get(f"sigma={sigma}: log error vs log {sweep}")
            if fit:
                grid = torch.tensor([float(xs[0]), float(xs[-1])])
                ax.plot(grid, torch.exp(fit["intercept"] + fit["slope"] * grid.log()), "k--", lw=0.8)
                ax.text(xs[-1], float(torch.exp(fit["intercept"] + fit["slope"] * grid.log())[-1]),
                        f" slope {fit['slope']:.2f}", fontsize=7, va="center")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("r (inputs kept per neuron)" if sweep == "r" else "N (training samples)")
        ax.set_ylabel("||W - W*|| / ||W*||")
        ax.set_title(f"N={s.N_fixed}" if sweep == "r" else f"r={s.r_fixed}")
        ax.legend(loc="upper left")
    out.png("error.png", fig)
