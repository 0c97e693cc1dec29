"""Experiment `imp`: iterative magnitude pruning on the teacher. A dense learner is trained, each neuron loses
`rate` of its remaining inputs by magnitude, the survivors are rewound to the initialisation, and so on.
Measured per level: test error (fresh noiseless samples), ||W - W*|| / ||W*||, and the precision / recall of the
kept inputs against the teacher's support. Expectation: the test error is lowest near pruning rate 1 - r*/d.

Protocol (ours): noisy labels, initialisation at relative distance delta from the teacher (rewind point θ0),
heavy-ball GD until the weights stop moving. Pruning is per neuron (every row keeps the same number of inputs),
batched over trials with one top-k.
"""

from dataclasses import dataclass

import torch

from ticketlab.core.masks import describe_density
from ticketlab.core.pruning import check_rate, round_half_up
from ticketlab.paper.theory.checks import memory, nonnegative, positive, teacher_shapes
from ticketlab.paper.theory.fitting import finite_stats
from ticketlab.paper.theory.init import near_teacher
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.student import relative_error
from ticketlab.paper.theory.teacher import make_teacher, sample, sample_bytes, teacher_output
from ticketlab.paper.theory.trainer import TrainSettings, train


@dataclass(frozen=True)
class ImpSettings:
    d: int = 100
    K: int = 5
    r_star: int = 10
    N: int = 1000
    sigma: float = 0.1
    N_test: int = 4000
    trials: int = 20
    rate: float = 0.2  # fraction of each neuron's remaining inputs removed per level
    levels: int = 14
    delta: float = 0.5
    lr: float = 0.5  # in units of K²
    momentum: float = 0.9
    max_iters: int = 2000
    stall_tol: float = 1e-6  # relative movement per 10 iterations below which a trial has converged


def prune_per_neuron(W: torch.Tensor, mask: torch.Tensor, rate: float) -> torch.Tensor:
    """Each row (neuron) keeps its largest-magnitude kept inputs, losing round_half_up(rate · kept) of them.
    All rows have the same kept count (they start dense and lose the same number each level)."""
    kept = int(mask[0, 0].sum())
    keep = kept - round_half_up(rate * kept)
    scores = torch.where(mask, W.abs(), torch.tensor(-1.0, dtype=W.dtype))
    top = scores.topk(keep, dim=-1).indices
    return torch.zeros_like(mask).scatter_(-1, top, True)


def support_recovery(mask: torch.Tensor, support: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision |kept ∩ support| / |kept| and recall |kept ∩ support| / |support| per trial."""
    both = (mask & support).flatten(1).sum(1).double()
    return both / mask.flatten(1).sum(1), both / support.flatten(1).sum(1)


@experiment("imp", "IMP on the teacher recovers its support; test error is lowest near pruning rate 1 - r*/d",
            ImpSettings, quick={"d": 40, "r_star": 5, "N": 400, "N_test": 500, "trials": 4, "rate": 0.3,
                                "levels": 7, "max_iters": 600})
def run(s: ImpSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    teacher_shapes(s.d, s.K, s.r_star, Ns=(s.N, s.N_test))
    positive("trials", s.trials)
    positive("levels", s.levels)
    nonnegative("sigma (label noise)", s.sigma)
    nonnegative("delta", s.delta)
    check_rate(s.rate, "rate")
    memory("imp", sample_bytes(s.trials, s.N + s.N_test, s.d, s.K), max_bytes)
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(seed, "teacher"))
    X, y = sample(teacher, s.N, s.sigma, stream(seed, "data"))
    X_test, _ = sample(teacher, s.N_test, 0.0, stream(seed, "test"))
    y_test = teacher_output(teacher.weights, X_test)
    mask = torch.ones_like(teacher.support)
    theta0 = near_teacher(teacher.weights, mask, s.delta, stream(seed, "init"))
    settings = TrainSettings(lr=s.lr * s.K**2, momentum=s.momentum, max_iters=s.max_iters, stall_tol=s.stall_tol)
    rows, nonfinite = [], 0
    for level in range(s.levels + 1):
        res = train(theta0, mask, X, y, settings, teacher.weights)  # rewind: every level restarts from θ0 ⊙ mask
        nonfinite += int((~res.finite).sum())
        test = (torch.relu(X_test @ res.weights.transpose(1, 2)).mean(-1) - y_test).pow(2).mean(-1)
        precision, recall = support_recovery(mask, teacher.support)
        r = int(mask[0, 0].sum())
        for t in range(s.trials):
            ok = bool(res.finite[t])
            rows.append({"level": level, "r": r, "pruning_rate": 1 - r / s.d, "trial": t, "finite": ok,
                         "test_mse": float(test[t]) if ok else float("nan"),
                         "relative_error": float(relative_error(res.weights, teacher.weights)[t]) if ok else
                         float("nan"), "precision": float(precision[t]), "recall": float(recall[t])})
        progress(f"  level {level}: r={r} ({describe_density(r / s.d)}), median test MSE "
                 f"{_stat(rows, level, 'test_mse')['median']:.3g}, precision {float(precision.mean()):.3f}, "
                 f"recall {float(recall.mean()):.3f}")
        if level < s.levels:
            mask = prune_per_neuron(res.weights, mask, s.rate)
    out.csv("levels.csv", rows)
    medians = [(_stat(rows, lv, "test_mse")["median"], lv) for lv in range(s.levels + 1)]
    best_level = min((m, lv) for m, lv in medians if m == m)[1]
    best = next(row for row in rows if row["level"] == best_level)
    at_support = [row for row in rows if row["r"] >= s.r_star]
    full_recall = sum(1 for row in at_support if row["recall"] == 1.0)
    lines = [f"lowest median test MSE at level {best_level}: r={best['r']}, pruning rate {best['pruning_rate']:.3f} "
             f"(teacher: 1 - r*/d = {1 - s.r_star / s.d:.3f})",
             f"support recall = 1 in {full_recall} of {len(at_support)} (trial, level) pairs with r >= r*"]
    draw(s, rows, out)
    return {"fits": {}, "lines": lines, "nonfinite_trials": nonfinite,
            "best": {"level": best_level, "r": best["r"], "pruning_rate": best["pruning_rate"]}}


def _stat(rows, level, key) -> dict:
    st = finite_stats(torch.tensor([row[key] for row in rows if row["level"] == level and row["finite"]]))
    return st if st["median"] is not None else {**st, "median": float("nan")}


def draw(s, rows, out) -> None:
    fig, (ax1, ax2) = figure(ncols=2, width=4.4, height=3.6)
    levels = sorted({row["level"] for row in rows})
    rates = [next(row["pruning_rate"] for row in rows if row["level"] == lv) for lv in levels]
    spread(ax1, rates, [_stat(rows, lv, "test_mse") for lv in levels], "test MSE")
    spread(ax1, rates, [_stat(rows, lv, "relative_error") for lv in levels], "||W - W*|| / ||W*||", marker="s")
    ax1.set_yscale("log")
    ax1.axvline(1 - s.r_star / s.d, color="gray", ls=":", label="1 - r*/d")
    ax1.set_xlabel("pruning rate 1 - r/d")
    ax1.set_title(f"IMP on the teacher: N={s.N}, σ={s.sigma}, {s.trials} trials")
    ax1.legend()
    spread(ax2, rates, [_stat(rows, lv, "precision") for lv in levels], "precision")
    spread(ax2, rates, [_stat(rows, lv, "recall") for lv in levels], "recall", marker="s")
    ax2.axvline(1 - s.r_star / s.d, color="gray", ls=":")
    ax2.set_xlabel("pruning rate 1 - r/d")
    ax2.set_ylabel("support precision / recall")
    ax2.legend()
    out.png("imp.png", fig)
