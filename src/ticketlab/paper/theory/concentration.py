"""Experiment `concentration`: the pruned empirical objective is closer to its expectation. Claim (talk, Part 1
"landscape"): the distance between f_N and E f scales like sqrt(r/N) (gradients: "distance between the gradient
directions of the objective and the generalisation function ∝ sqrt(r)"), with no dependence on d.

Protocol (ours): the population loss f is exact (population.py: closed form for Gaussian inputs). Per trial and
mask (oracle, r inputs per neuron) we draw `points` random W = W* + rho·||W*||·U on the mask (U unit) and take the
largest deviation over them of the masked gradient, ||∇f_N(W) - ∇f(W)||_F, and of the value |f_N(W) - f(W)|:
a sampled supremum over the sphere of radius rho around W*. Grid over r, N and d; intervals are one slope per
trial; the form is checked before an exponent is quoted (forms.py); d: log-log slope at fixed (r, N).
"""

from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import memory, nonnegative, positive, teacher_shapes
from ticketlab.paper.theory.concentration_report import draw, summarise
from ticketlab.paper.theory.population import population_loss_and_grad
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.student import loss_and_grad
from ticketlab.paper.theory.teacher import make_teacher, oracle_mask, sample, sample_bytes


@dataclass(frozen=True)
class ConcentrationSettings:
    ds: tuple[int, ...] = (50, 100, 200)
    K: int = 5
    r_star: int = 10
    rs: tuple[int, ...] = (10, 20, 50, 100, 200)  # those <= d are used at each d
    Ns: tuple[int, ...] = (250, 500, 1000, 2000, 4000, 8000)
    sigma: float = 0.1
    rho: float = 0.3  # radius of the sphere around W*, relative to ||W*||
    points: int = 8
    trials: int = 20


def deviations(teacher, mask, X, y, s, generator):
    """Largest over `points` random W on the sphere: gradient deviation and value deviation, (T,) each."""
    W_star = teacher.weights.double()
    T = W_star.shape[0]
    grad_dev = torch.zeros(T, dtype=torch.float64)
    value_dev = torch.zeros(T, dtype=torch.float64)
    for _ in range(s.points):
        U = torch.randn(W_star.shape, generator=generator, dtype=torch.float64) * mask
        U = U / U.flatten(1).norm(dim=1).view(T, 1, 1)
        W = W_star + s.rho * W_star.flatten(1).norm(dim=1).view(T, 1, 1) * U
        f_n, g_n = loss_and_grad(W, X, y, mask)
        f, g = population_loss_and_grad(W, W_star, s.sigma, mask)
        grad_dev = torch.maximum(grad_dev, (g_n - g).flatten(1).norm(dim=1))
        value_dev = torch.maximum(value_dev, (f_n - f).abs())
    return grad_dev, value_dev


@experiment("concentration", "the pruned empirical objective is closer to its expectation: distance ∝ sqrt(r/N), "
            "independent of d", ConcentrationSettings,
            quick={"ds": (20, 40), "r_star": 4, "rs": (4, 10, 20, 40), "Ns": (200, 800, 3200), "trials": 5,
                   "points": 3})
def run(s: ConcentrationSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    for d in s.ds:
        teacher_shapes(d, s.K, s.r_star, rs=[r for r in s.rs if r <= d], Ns=s.Ns)
    positive("trials", s.trials)
    positive("points", s.points)
    nonnegative("sigma (label noise)", s.sigma)
    nonnegative("rho", s.rho)
    memory("concentration", 2 * sample_bytes(s.trials, max(s.Ns), max(s.ds), s.K), max_bytes)
    rows = []
    for d in s.ds:
        teacher = make_teacher(s.trials, d, s.K, s.r_star, stream(seed, "teacher", d), dtype=torch.float64)
        for N in s.Ns:
            X, y = sample(teacher, N, s.sigma, stream(seed, "data", d, N))
            for r in (r for r in s.rs if r <= d):
                mask = oracle_mask(teacher, r, stream(seed, "mask", d, r))
                grad_dev, value_dev = deviations(teacher, mask, X, y, s, stream(seed, "points", d, N, r))
                rows += [{"d": d, "r": r, "N": N, "trial": t, "grad_deviation": float(grad_dev[t]),
                          "value_deviation": float(value_dev[t])} for t in range(s.trials)]
        progress(f"  d={d}: median gradient deviation at N={s.Ns[0]} " + " ".join(
            f"r={r}: {_median(rows, d, r, s.Ns[0]):.3g}" for r in s.rs if r <= d))
    out.csv("trials.csv", rows)
    fits, lines, verdicts = summarise(s, rows)
    draw(s, rows, out)
    return {"fits": fits, "lines": lines, "verdicts": verdicts, "nonfinite_trials": 0}


def _median(rows, d, r, N) -> float:
    return float(torch.tensor([row["grad_deviation"] for row in rows if row["d"] == d and row["r"] == r
                               and row["N"] == N]).median())
