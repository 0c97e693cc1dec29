"""Experiment `convergence`: iterations to reach relative error eps vs pruning rate 1 - r/d at fixed N, for plain
gradient descent and heavy ball (the talk's Figure 5), and the measured linear convergence rate vs sqrt(r/N).

Protocol (ours): noiseless teacher, oracle masks, start at relative distance delta, the same step size for every
r (stable for the dense network). The linear rate of a trial is exp(slope) of log-error against iteration, fitted
on the checks between delta/2 and eps; speed = 1 - rate. The claim (rate ~ 1 - c·sqrt(r/N) in the talk's
wording: the pruned network converges faster) predicts speed = a - b·sqrt(r/N) with b > 0.
"""

import math
from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import memory, nonnegative, positive, teacher_shapes
from ticketlab.paper.theory.fitting import finite_stats, fit_line
from ticketlab.paper.theory.init import near_teacher
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.teacher import make_teacher, oracle_mask, sample, sample_bytes
from ticketlab.paper.theory.trainer import TrainSettings, train


@dataclass(frozen=True)
class ConvergenceSettings:
    d: int = 100
    K: int = 5
    r_star: int = 10
    rs: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    Ns: tuple[int, ...] = (1000, 2000, 4000)  # the first is the fixed N of the iterations figure
    trials: int = 20
    delta: float = 0.3
    lr: float = 0.5  # in units of K²
    heavy_ball: float = 0.5  # momentum of the heavy-ball runs (plain GD has 0)
    max_iters: int = 4000
    eps: float = 1e-3
    check_every: int = 5


def per_trial_rate(curve: torch.Tensor, iterations: torch.Tensor, check_every: int, upper: float, eps: float):
    """Linear rate per trial: exp of the least-squares slope of log error over the checks with eps <= err <= upper
    (batched masked OLS; nan with fewer than 3 such checks)."""
    steps = torch.arange(curve.shape[0], dtype=torch.float64).unsqueeze(1) * check_every
    err = curve.double()
    use = torch.isfinite(err) & (err <= upper) & (err >= eps) & (steps <= torch.nan_to_num(iterations, nan=1e18))
    w = use.double()
    n = w.sum(0)
    x_mean = (w * steps).sum(0) / n.clamp_min(1)
    logs = torch.where(use, err.clamp_min(1e-300).log(), 0.0)
    y_mean = (w * logs).sum(0) / n.clamp_min(1)
    sxy = (w * (steps - x_mean) * (logs - y_mean)).sum(0)
    sxx = (w * (steps - x_mean).pow(2)).sum(0)
    slope = sxy / sxx.clamp_min(1e-300)
    return torch.where(n >= 3, slope.exp(), torch.nan)


def run_cell(s, teacher, r: int, N: int, momentum: float, seed: int):
    mask = oracle_mask(teacher, r, stream(seed, "mask", r))
    X, y = sample(teacher, N, 0.0, stream(seed, "data", N))
    W0 = near_teacher(teacher.weights, mask, s.delta, stream(seed, "init", r))  # same start for GD and heavy ball
    settings = TrainSettings(lr=s.lr * s.K**2, momentum=momentum, max_iters=s.max_iters, eps=s.eps,
                             check_every=s.check_every)
    res = train(W0, mask, X, y, settings, teacher.weights)
    rate = per_trial_rate(res.error_curve, res.iterations_to_eps, s.check_every, s.delta / 2, s.eps)
    rate[~res.finite] = float("nan")
    return res, rate


@experiment("convergence", "pruning speeds up convergence: iterations to eps fall with the pruning rate, "
            "rate ~ 1 - c·sqrt(r/N)", ConvergenceSettings,
            quick={"d": 40, "r_star": 5, "rs": (5, 10, 20, 40), "Ns": (400, 800), "trials": 3, "max_iters": 800})
def run(s: ConvergenceSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    teacher_shapes(s.d, s.K, s.r_star, rs=s.rs, Ns=s.Ns)
    positive("trials", s.trials)
    nonnegative("delta", s.delta)
    memory("convergence cell", sample_bytes(s.trials, max(s.Ns), s.d, s.K), max_bytes)
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(seed, "teacher"))
    rows, nonfinite = [], 0
    methods = {"GD": 0.0, f"heavy ball (β={s.heavy_ball})": s.heavy_ball}
    for N in s.Ns:
        for method, momentum in methods.items():
            for r in s.rs:
                res, rate = run_cell(s, teacher, r, N, momentum, seed)
                nonfinite += int((~res.finite).sum())
                for t in range(s.trials):
                    rows.append({"N": N, "r": r, "pruning_rate": 1 - r / s.d, "method": method, "trial": t,
                                 "finite": bool(res.finite[t]), "iterations_to_eps": float(res.iterations_to_eps[t]),
                                 "rate": float(rate[t]), "sqrt_r_over_N": math.sqrt(r / N)})
            progress(f"  N={N} {method}: median iterations " + " ".join(
                _median_iters(rows, N, method, r) for r in s.rs))
    out.csv("trials.csv", rows)
    fits, lines = {}, []
    for method in methods:
        pts = [row for row in rows if row["method"] == method and row["finite"]]
        fit = fit_line([p["sqrt_r_over_N"] for p in pts], [1 - p["rate"] for p in pts])
        fits[f"{method}: speed (1 - rate) = a + slope·sqrt(r/N)"] = fit.to_dict() if fit else None
        if fit:
            lines.append(f"{method}: {fit.describe('sqrt(r/N)', '1-rate')}; c = -slope/intercept = "
                         f"{-fit.slope / fit.intercept:.3g}")
        reached = [row for row in pts if row["N"] == s.Ns[0]]
        never = sum(1 for row in reached if row["iterations_to_eps"] != row["iterations_to_eps"])
        first = _median_iters(rows, s.Ns[0], method, s.rs[0])
        last = _median_iters(rows, s.Ns[0], method, s.rs[-1])
        lines.append(f"{method} at N={s.Ns[0]}: median iterations to eps {first} at r={s.rs[0]} vs {last} at "
                     f"r={s.rs[-1]}; {never} finite trials never reached eps within {s.max_iters} iterations")
    draw(s, rows, methods, fits, out)
    return {"fits": fits, "lines": lines, "nonfinite_trials": nonfinite}


def _median_iters(rows, N, method, r) -> str:
    v = torch.tensor([row["iterations_to_eps"] for row in rows
                      if row["N"] == N and row["method"] == method and row["r"] == r and row["finite"]])
    st = finite_stats(v)
    return "never" if st["median"] is None else f"{st['median']:.0f}"


def draw(s, rows, methods, fits, out) -> None:
    fig, (ax1, ax2) = figure(ncols=2, width=4.6, height=3.6)
    rates = [1 - r / s.d for r in s.rs]
    for method in methods:
        stats = [finite_stats(torch.tensor([row["iterations_to_eps"] for row in rows if row["N"] == s.Ns[0]
                                            and row["method"] == method and row["r"] == r and row["finite"]]))
                 for r in s.rs]
        spread(ax1, rates, stats, method)
    ax1.set_xlabel("pruning rate 1 - r/d")
    ax1.set_ylabel(f"iterations to relative error {s.eps:g}")
    ax1.set_title(f"N={s.Ns[0]}, d={s.d}, K={s.K}, r*={s.r_star}; median, IQR")
    ax1.legend()
    for (method, _), marker in zip(methods.items(), "os", strict=False):
        pts = [row for row in rows if row["method"] == method and row["finite"] and row["rate"] == row["rate"]]
        ax2.scatter([p["sqrt_r_over_N"] for p in pts], [1 - p["rate"] for p in pts], s=6, alpha=0.35,
                    marker=marker, label=method)
        fit = fits[f"{method}: speed (1 - rate) = a + slope·sqrt(r/N)"]
        if fit:
            xs = torch.linspace(0, max(p["sqrt_r_over_N"] for p in pts), 20)
            ax2.plot(xs, fit["intercept"] + fit["slope"] * xs, "--", lw=1,
                     label=f"fit: {fit['intercept']:.3g} {fit['slope']:+.3g}·sqrt(r/N)")
    ax2.set_xlabel("sqrt(r/N)")
    ax2.set_ylabel("convergence speed 1 - rate (per iteration)")
    ax2.set_title(f"all N in {', '.join(map(str, s.Ns))}")
    ax2.legend()
    out.png("convergence.png", fig)
