"""Experiment `imp`: iterative magnitude pruning on the teacher. A dense learner is trained, each neuron loses
`rate` of its remaining inputs by magnitude, the survivors are rewound to the initialisation, and so on.
Measured per level: test error (fresh noiseless samples), ||W - W*|| / ||W*||, and the precision / recall of the
kept inputs against the teacher's support. Expectation: the test error is lowest near pruning rate 1 - r*/d.

Protocol (ours): noisy labels, heavy-ball GD until the weights stop moving. Two starts (rewind points θ0), run as
one batch on the same samples: `random` (w_j ~ N(0, I/d), nothing known about the teacher: the main line) and
`near` (relative distance delta from W*: the control the earlier version used alone). Pruning is per neuron (every
row keeps the same number of inputs), batched with one top-k. With a random start the neurons may come out
permuted, so errors and support recovery use the best matching of student to teacher neurons.
"""

from dataclasses import dataclass

import torch

from ticketlab.core.masks import describe_density
from ticketlab.core.pruning import check_rate, round_half_up
from ticketlab.errors import unknown
from ticketlab.paper.theory.checks import memory, nonnegative, positive, teacher_shapes
from ticketlab.paper.theory.imp_report import _stat, draw, imp_verdicts
from ticketlab.paper.theory.init import near_teacher
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.teacher import make_teacher, sample, sample_bytes, teacher_output
from ticketlab.paper.theory.trainer import TrainSettings, train
from ticketlab.paper.theory.variants import aligned, aligned_error, random_init

STARTS = ("random", "near")


@dataclass(frozen=True)
class ImpSettings:
    d: int = 100
    K: int = 5
    r_star: int = 10
    N: int = 1000
    sigma: float = 0.1
    N_test: int = 4000
    trials: int = 12
    rate: float = 0.25  # fraction of each neuron's remaining inputs removed per level
    levels: int = 11
    delta: float = 0.5
    lr: float = 0.5  # in units of K²
    momentum: float = 0.9
    max_iters: int = 1500
    stall_tol: float = 1e-6  # relative movement per 10 iterations below which a trial has converged
    starts: tuple[str, ...] = ("random", "near")


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
            ImpSettings, quick={"d": 40, "r_star": 5, "N": 800, "N_test": 500, "trials": 4, "rate": 0.3,
                                "levels": 6, "max_iters": 600})
def run(s: ImpSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    teacher_shapes(s.d, s.K, s.r_star, Ns=(s.N, s.N_test))
    positive("trials", s.trials)
    positive("levels", s.levels)
    nonnegative("sigma (label noise)", s.sigma)
    nonnegative("delta", s.delta)
    check_rate(s.rate, "rate")
    memory("imp", sample_bytes(s.trials, s.N + s.N_test, s.d, s.K * len(s.starts)), max_bytes)
    for start in s.starts:
        if start not in STARTS:
            raise unknown("IMP start", start, STARTS)
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(seed, "teacher"))
    X, y = sample(teacher, s.N, s.sigma, stream(seed, "data"))
    X_test, _ = sample(teacher, s.N_test, 0.0, stream(seed, "test"))
    y_test = teacher_output(teacher.weights, X_test)
    G, T = len(s.starts), s.trials
    theta0 = torch.stack([random_init(teacher.weights.shape, stream(seed, "random-init")) if start == "random" else
                          near_teacher(teacher.weights, torch.ones_like(teacher.support), s.delta, stream(seed, "init"))
                          for start in s.starts], dim=1).reshape(T * G, s.K, s.d)
    target = teacher.weights.repeat_interleave(G, dim=0)
    support = teacher.support.repeat_interleave(G, dim=0)
    mask = torch.ones_like(support)
    settings = TrainSettings(lr=s.lr * s.K**2, momentum=s.momentum, max_iters=s.max_iters, stall_tol=s.stall_tol)
    rows = []
    for level in range(s.levels + 1):
        res = train(theta0, mask, X, y, settings, target, error_fn=aligned_error)  # rewind: restart from θ0 ⊙ mask
        test = (torch.relu(X_test.repeat_interleave(G, dim=0) @ res.weights.transpose(1, 2)).mean(-1)
                - y_test.repeat_interleave(G, dim=0)).pow(2).mean(-1)
        precision, recall = support_recovery(mask, aligned(support, res.weights, target))
        r = int(mask[0, 0].sum())
        for b in range(T * G):
            ok = bool(res.finite[b])
            rows.append({"start": s.starts[b % G], "level": level, "r": r, "pruning_rate": 1 - r / s.d,
                         "trial": b // G, "finite": ok, "test_mse": float(test[b]) if ok else float("nan"),
                         "relative_error": float(res.final_error[b]), "precision": float(precision[b]),
                         "recall": float(recall[b])})
        progress(f"  level {level}: r={r} ({describe_density(r / s.d)}), median test MSE " + ", ".join(
            f"{st} {_stat(rows, level, 'test_mse', st)['median']:.3g}" for st in s.starts) + "; recall " + ", ".join(
            f"{st} {_stat(rows, level, 'recall', st)['median']:.2f}" for st in s.starts))
        if level < s.levels:
            mask = prune_per_neuron(res.weights, mask, s.rate)
    out.csv("levels.csv", rows)
    lines, verdicts, best = imp_verdicts(s, rows)
    draw(s, rows, out)
    return {"fits": {}, "lines": lines, "verdicts": verdicts, "best": best,
            "nonfinite_trials": sum(1 for row in rows if not row["finite"])}
