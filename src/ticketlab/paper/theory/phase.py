"""Experiment `phase`: success rate over an (N, r) grid, noiseless, per variant (variants.py), and the phase boundary
N50(r) with its form.

Protocol (ours): per trial a sparse teacher (d, K, r*); for every variant and r one learner; heavy-ball GD on N
noiseless samples; success = aligned relative error < eps within max_iters. All variants and r of one N share each
trial's samples and run as one batch (paired design). N50(r) is where the success rate crosses 1/2 (linear
interpolation in N). Intervals: a bootstrap over trials (teachers) of the whole N50 curve and its fits. The claim
(sample complexity linear in r, not in d) predicts N50 = a·r + b with a > 0; the oracle variant, whose mask is
given, is the control: there, N50 just above K·r is the number of unknowns.
"""

from dataclasses import dataclass

from ticketlab.paper.theory.checks import memory, nonnegative, positive, teacher_shapes
from ticketlab.paper.theory.phase_fit import boundary_fits, boundary_verdicts
from ticketlab.paper.theory.phase_plot import draw
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.teacher import make_teacher, sample, sample_bytes
from ticketlab.paper.theory.trainer import TrainSettings, train
from ticketlab.paper.theory.variants import aligned_error, batch_learners, check_variants


@dataclass(frozen=True)
class PhaseSettings:
    d: int = 100
    K: int = 5
    r_star: int = 10
    rs: tuple[int, ...] = (10, 25, 50, 100)
    Ns: tuple[int, ...] = (50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600, 2400)
    variants: tuple[str, ...] = ("oracle", "oracle-random", "oracle-spectral", "found", "found-spectral")
    trials: int = 10
    delta: float = 0.3  # relative distance of the oracle start from W*
    lr: float = 0.5  # in units of K² (the loss curvature scales like 1/K²)
    momentum: float = 0.9
    max_iters: int = 700
    dense_iters: int = 800  # the dense student that found masks are read from
    eps: float = 1e-3


def check(s: PhaseSettings) -> None:
    teacher_shapes(s.d, s.K, s.r_star, rs=s.rs, Ns=s.Ns)
    positive("trials", s.trials)
    nonnegative("delta", s.delta)
    check_variants(s.variants)


def run_row(s: PhaseSettings, teacher, N: int, seed: int) -> list[dict]:
    """Every (variant, r) cell at one N: one batched computation over trials and learners."""
    X, y = sample(teacher, N, 0.0, stream(seed, "data", N))
    cfg = {"lr": s.lr * s.K**2, "momentum": s.momentum, "max_iters": s.dense_iters}
    cells, masks, starts, recall = batch_learners(s.variants, teacher, X, y, s.rs, seed, N, s.delta, cfg)
    T, G = teacher.trials, len(cells)
    settings = TrainSettings(lr=s.lr * s.K**2, momentum=s.momentum, max_iters=s.max_iters, eps=s.eps)
    res = train(starts, masks, X, y, settings, teacher.weights.repeat_interleave(G, dim=0), error_fn=aligned_error)
    error, finite = res.final_error.view(T, G), res.finite.view(T, G)
    return [{"variant": v, "N": N, "r": r, "trial": t, "finite": bool(finite[t, g]),
             "success": bool(finite[t, g] and error[t, g] < s.eps), "final_error": float(error[t, g]),
             "support_recall": float(recall[t, g])} for g, (v, r) in enumerate(cells) for t in range(T)]


@experiment("phase", "sample complexity is linear in r: success boundary N50 ≈ a·r + b", PhaseSettings,
            quick={"d": 40, "r_star": 5, "rs": (5, 10, 40), "Ns": (40, 80, 160, 320, 640), "trials": 4,
                   "max_iters": 300, "dense_iters": 300})
def run(s: PhaseSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    check(s)
    memory("phase grid row", sample_bytes(s.trials, max(s.Ns), s.d, s.K * len(s.rs) * len(s.variants)), max_bytes)
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(seed, "teacher"))
    rows = []
    for N in s.Ns:
        rows += run_row(s, teacher, N, seed)
        progress(f"  N={N}: success rate " + "; ".join(
            v + " " + " ".join(f"{_rate(rows, v, r, N):.2f}" for r in s.rs) for v in s.variants))
    out.csv("trials.csv", rows)
    fits, boundary = boundary_fits(s, rows, seed)
    out.csv("boundary.csv", boundary)
    draw(s, rows, boundary, fits, out)
    verdicts, lines = boundary_verdicts(s, fits, boundary)
    return {"fits": fits, "lines": lines, "verdicts": verdicts, "boundary": boundary,
            "nonfinite_trials": sum(1 for row in rows if not row["finite"])}


def _rate(rows, v, r, N) -> float:
    sel = [row["success"] for row in rows if row["variant"] == v and row["r"] == r and row["N"] == N
           and row["finite"]]
    return sum(sel) / len(sel) if sel else float("nan")
