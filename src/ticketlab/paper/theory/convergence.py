"""Experiment `convergence`: iterations to reach relative error eps vs pruning rate 1 - r/d at fixed N (the talk's
Figure 5), and the local linear convergence rate vs sqrt(r/N), per variant (variants.py) and method (plain GD,
heavy ball).

Protocol (ours): noiseless teacher, the same step size for every r (stable for the dense network). The linear rate
of a trial is exp(slope) of log aligned error against iteration over the checks between `rate_upper` and eps (the
local phase, also for random starts); speed = 1 - rate. Intervals: one slope per trial, t over trials.
Two questions are kept apart: does the speed fall as sqrt(r/N) grows across the grid (pruning AND samples), and
does it when only N changes at fixed r (the finite-sample term the claim is about, slope "within r")? If only the
first holds, the speed-up follows the population curvature of the r-input learner, not sqrt(r/N).
"""

import math
from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import memory, nonnegative, positive, teacher_shapes
from ticketlab.paper.theory.convergence_report import draw, summarise
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.teacher import make_teacher, sample, sample_bytes
from ticketlab.paper.theory.trainer import TrainSettings, train
from ticketlab.paper.theory.variants import aligned_error, batch_learners, check_variants


@dataclass(frozen=True)
class ConvergenceSettings:
    d: int = 100
    K: int = 5
    r_star: int = 10
    rs: tuple[int, ...] = (10, 25, 50, 100)
    Ns: tuple[int, ...] = (1500, 2500, 4000)  # the first is the fixed N of the iterations figure
    variants: tuple[str, ...] = ("oracle", "found")
    trials: int = 10
    delta: float = 0.3
    lr: float = 0.5  # in units of K²
    heavy_ball: float = 0.5  # momentum of the heavy-ball runs (plain GD has 0)
    max_iters: int = 1500
    dense_iters: int = 800
    eps: float = 1e-3
    rate_upper: float = 0.1  # the rate is fitted on errors between eps and this
    check_every: int = 5


def per_trial_rate(curve: torch.Tensor, iterations: torch.Tensor, check_every: int, upper: float, eps: float):
    """Linear rate per learner: exp of the least-squares slope of log error over the checks with
    eps <= err <= upper (batched masked OLS; nan with fewer than 3 such checks)."""
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


def run_row(s, teacher, N: int, method: str, momentum: float, seed: int) -> list[dict]:
    X, y = sample(teacher, N, 0.0, stream(seed, "data", N))
    cfg = {"lr": s.lr * s.K**2, "momentum": 0.9, "max_iters": s.dense_iters}
    cells, masks, starts, recall = batch_learners(s.variants, teacher, X, y, s.rs, seed, N, s.delta, cfg)
    T, G = teacher.trials, len(cells)
    settings = TrainSettings(lr=s.lr * s.K**2, momentum=momentum, max_iters=s.max_iters, eps=s.eps,
                             check_every=s.check_every)
    res = train(starts, masks, X, y, settings, teacher.weights.repeat_interleave(G, dim=0), error_fn=aligned_error)
    rate = per_trial_rate(res.error_curve, res.iterations_to_eps, s.check_every, s.rate_upper, s.eps)
    rate[~res.finite] = float("nan")
    iters, rate, finite = (v.view(T, G) for v in (res.iterations_to_eps, rate, res.finite))
    return [{"variant": v, "method": method, "N": N, "r": r, "pruning_rate": 1 - r / s.d, "trial": t,
             "finite": bool(finite[t, g]), "iterations_to_eps": float(iters[t, g]), "rate": float(rate[t, g]),
             "speed": 1 - float(rate[t, g]), "sqrt_r_over_N": math.sqrt(r / N),
             "support_recall": float(recall[t, g])} for g, (v, r) in enumerate(cells) for t in range(T)]


@experiment("convergence", "pruning speeds up convergence: iterations to eps fall with the pruning rate, "
            "rate ~ 1 - c·sqrt(r/N)", ConvergenceSettings,
            quick={"d": 40, "r_star": 5, "rs": (5, 10, 40), "Ns": (800, 1600), "trials": 3, "max_iters": 600,
                   "dense_iters": 400})
def run(s: ConvergenceSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    teacher_shapes(s.d, s.K, s.r_star, rs=s.rs, Ns=s.Ns)
    positive("trials", s.trials)
    nonnegative("delta", s.delta)
    check_variants(s.variants)
    memory("convergence row", sample_bytes(s.trials, max(s.Ns), s.d, s.K * len(s.rs) * len(s.variants)), max_bytes)
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(seed, "teacher"))
    methods = {"GD": 0.0, f"heavy ball (β={s.heavy_ball})": s.heavy_ball}
    rows = []
    for N in s.Ns:
        for method, momentum in methods.items():
            rows += run_row(s, teacher, N, method, momentum, seed)
            progress(f"  N={N} {method}: median iterations " + "; ".join(
                v + " " + " ".join(_median(rows, v, method, N, r) for r in s.rs) for v in s.variants))
    out.csv("trials.csv", rows)
    fits, lines, verdicts = summarise(s, rows, methods)
    draw(s, rows, methods, out)
    return {"fits": fits, "lines": lines, "verdicts": verdicts,
            "nonfinite_trials": sum(1 for row in rows if not row["finite"])}


def _median(rows, v, method, N, r) -> str:
    vals = [row["iterations_to_eps"] for row in rows if row["variant"] == v and row["method"] == method
            and row["N"] == N and row["r"] == r and row["finite"]]
    reached = sorted(x for x in vals if x == x)
    if len(reached) * 2 <= len(vals):
        return "never"
    return f"{reached[len(vals) // 2]:.0f}" if len(vals) // 2 < len(reached) else "never"
