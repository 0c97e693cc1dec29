"""Experiment `error`: final aligned relative error ||W - W*||_F / ||W*||_F vs r at fixed N and sigma, and vs N at
fixed r, per variant (variants.py). Claim: error ∝ sqrt(r/N), i.e. log-log slope +1/2 in r, -1/2 in N.

Protocol (ours): noisy labels, heavy-ball GD until the weights move less than stall_tol (relative) per 10
iterations (the empirical minimiser the start leads to). The same teacher and samples across r and variants
(paired). Before an exponent is quoted the functional form is checked (forms.py): per-trial log-log slopes with t
intervals over trials, local slopes between neighbouring grid points, and the curvature of log error in log x.
"""

from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import memory, nonnegative, positive, teacher_shapes
from ticketlab.paper.theory.error_report import draw, summarise
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.teacher import make_teacher, sample, sample_bytes
from ticketlab.paper.theory.trainer import TrainSettings, train
from ticketlab.paper.theory.variants import aligned_error, batch_learners, check_variants


@dataclass(frozen=True)
class ErrorSettings:
    d: int = 100
    K: int = 5
    r_star: int = 10
    sigmas: tuple[float, ...] = (0.1,)
    N_fixed: int = 2000  # N of the error-vs-r sweep
    rs: tuple[int, ...] = (10, 20, 40, 100)
    r_fixed: int = 20  # r of the error-vs-N sweep
    Ns: tuple[int, ...] = (1000, 2000, 4000, 8000)
    variants: tuple[str, ...] = ("oracle", "found")
    trials: int = 10
    delta: float = 0.3
    lr: float = 0.5  # in units of K²
    momentum: float = 0.9
    max_iters: int = 1000
    dense_iters: int = 800
    stall_tol: float = 1e-6


def run_cells(s, teacher, rs, N: int, sigma: float, seed: int) -> list[dict]:
    """Every (variant, r) at one N as one batch: all learners of a trial share its samples."""
    X, y = sample(teacher, N, sigma, stream(seed, "data", N, sigma))
    cfg = {"lr": s.lr * s.K**2, "momentum": s.momentum, "max_iters": s.dense_iters}
    cells, masks, starts, recall = batch_learners(s.variants, teacher, X, y, rs, seed, (N, sigma), s.delta, cfg)
    T, G = teacher.trials, len(cells)
    settings = TrainSettings(lr=s.lr * s.K**2, momentum=s.momentum, max_iters=s.max_iters, stall_tol=s.stall_tol)
    res = train(starts, masks, X, y, settings, teacher.weights.repeat_interleave(G, dim=0), error_fn=aligned_error)
    error, finite = res.final_error.view(T, G), res.finite.view(T, G)
    return [{"variant": v, "sigma": sigma, "r": r, "N": N, "trial": t, "finite": bool(finite[t, g]),
             "final_error": float(error[t, g]), "support_recall": float(recall[t, g]), "iterations": res.iterations}
            for g, (v, r) in enumerate(cells) for t in range(T)]


@experiment("error", "generalisation error ∝ sqrt(r/N): log-log slope +1/2 in r, -1/2 in N", ErrorSettings,
            quick={"d": 40, "r_star": 5, "rs": (5, 10, 20, 40), "Ns": (800, 1600, 3200), "N_fixed": 1600,
                   "r_fixed": 10, "trials": 4, "max_iters": 300, "dense_iters": 300})
def run(s: ErrorSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    teacher_shapes(s.d, s.K, s.r_star, rs=(*s.rs, s.r_fixed), Ns=(*s.Ns, s.N_fixed))
    positive("trials", s.trials)
    nonnegative("delta", s.delta)
    check_variants(s.variants)
    for sigma in s.sigmas:
        nonnegative("sigma (label noise)", sigma)
    memory("error sweep", sample_bytes(s.trials, max(max(s.Ns), s.N_fixed), s.d,
                                       s.K * len(s.rs) * len(s.variants)), max_bytes)
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(seed, "teacher"))
    rows = []
    for sigma in s.sigmas:
        for sweep, calls in (("r", [(tuple(s.rs), s.N_fixed)]), ("N", [((s.r_fixed,), N) for N in s.Ns])):
            for rs, N in calls:
                rows += [{"sweep": sweep, **row} for row in run_cells(s, teacher, rs, N, sigma, seed)]
                progress(f"  sigma={sigma} vs {sweep}, N={N}: median error " + "; ".join(
                    v + " " + " ".join(f"{_median(rows, sweep, sigma, v, r, N):.3g}" for r in rs)
                    for v in s.variants))
    out.csv("trials.csv", rows)
    fits, lines, verdicts = summarise(s, rows)
    draw(s, rows, fits, out)
    return {"fits": fits, "lines": lines, "verdicts": verdicts,
            "nonfinite_trials": sum(1 for row in rows if not row["finite"])}


def _median(rows, sweep, sigma, v, r, N) -> float:
    vals = torch.tensor([row["final_error"] for row in rows if row["sweep"] == sweep and row["sigma"] == sigma
                         and row["variant"] == v and row["r"] == r and row["N"] == N and row["finite"]])
    return float(vals.median()) if vals.numel() else float("nan")
