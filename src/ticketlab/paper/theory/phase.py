"""Experiment `phase`: success rate over an (N, r) grid, noiseless, with the fitted phase boundary N ≈ a·r + b.

Protocol (ours): per trial a sparse teacher (d, K, r*); for every r the learner's mask keeps r inputs per neuron
including the teacher's support; it starts at relative distance `delta` from W* and runs heavy-ball GD on N
noiseless samples; all trials and all r of one N are one batched computation. Success = ||W - W*||_F / ||W*||_F <
eps within max_iters. The same teacher and samples are used across r (paired design). The boundary N50(r) is where
the success rate crosses 1/2 (linear interpolation in N); the claim (sample complexity linear in r) predicts N50 =
a·r + b.
"""

from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import memory, nonnegative, positive, teacher_shapes
from ticketlab.paper.theory.fitting import crossing, fit_line
from ticketlab.paper.theory.init import moment_init, near_teacher
from ticketlab.paper.theory.plots import figure
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.teacher import make_teacher, oracle_mask, sample, sample_bytes
from ticketlab.paper.theory.trainer import TrainSettings, train


@dataclass(frozen=True)
class PhaseSettings:
    d: int = 100
    K: int = 5
    r_star: int = 10
    rs: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    Ns: tuple[int, ...] = (25, 50, 75, 100, 125, 150, 175, 200, 225, 250, 275, 300, 325, 350, 375, 400, 450, 500,
                           550, 600, 650, 700, 800, 1000)
    trials: int = 20
    delta: float = 0.3  # relative distance of the initialisation from W*
    init: str = "near"  # near | moment (see theory/init.py)
    lr: float = 0.5  # in units of K² (the loss curvature scales like 1/K²)
    momentum: float = 0.9
    max_iters: int = 1000
    eps: float = 1e-3


def check(s: PhaseSettings) -> None:
    teacher_shapes(s.d, s.K, s.r_star, rs=s.rs, Ns=s.Ns)
    positive("trials", s.trials)
    nonnegative("delta", s.delta)
    if s.init not in ("near", "moment"):
        from ticketlab.errors import unknown
        raise unknown("initialisation", s.init, ["near", "moment"])


def initial_weights(s, teacher, mask, X, y, seed, *keys):
    if s.init == "moment":
        return moment_init(X, y, mask)
    return near_teacher(teacher.weights, mask, s.delta, stream(seed, "init", *keys))


def run_row(s: PhaseSettings, teacher, rs, N: int, seed: int) -> list[dict]:
    """All trials of the cells (N, r) for every r in `rs` as one batched computation: the learners of one trial
    share its N samples (paired design), so one pass over the samples serves every r."""
    X, y = sample(teacher, N, 0.0, stream(seed, "data", N))
    masks = [oracle_mask(teacher, r, stream(seed, "mask", r)) for r in rs]
    starts = [initial_weights(s, teacher, m, X, y, seed, r, N) for r, m in zip(rs, masks, strict=True)]
    T, G = teacher.trials, len(rs)
    stacked = lambda ts: torch.stack(ts, dim=1).reshape(T * G, *ts[0].shape[1:])  # noqa: E731  learner b = t·G + g
    settings = TrainSettings(lr=s.lr * s.K**2, momentum=s.momentum, max_iters=s.max_iters, eps=s.eps)
    target = teacher.weights.repeat_interleave(G, dim=0)
    res = train(stacked(starts), stacked(masks), X, y, settings, target)
    nan = float("nan")
    cells = []
    for g, r in enumerate(rs):
        error, finite_t = res.final_error.view(T, G)[:, g], res.finite.view(T, G)[:, g]
        iters = res.iterations_to_eps.view(T, G)[:, g]
        success = (error < s.eps) & finite_t
        finite = int(finite_t.sum())
        cells.append({"N": N, "r": r, "trials": T, "finite": finite, "nonfinite": T - finite,
                      "success": int(success.sum()), "success_rate": float(success.sum()) / finite if finite else nan,
                      "median_iterations_to_eps": float(iters.nanmedian()) if bool(success.any()) else nan,
                      "median_final_error": float(error[finite_t].median()) if finite else nan})
    return cells


@experiment("phase", "sample complexity is linear in r: success boundary N ≈ a·r + b", PhaseSettings,
            quick={"d": 40, "r_star": 5, "rs": (5, 10, 20, 40), "Ns": (20, 40, 80, 160, 320), "trials": 4,
                   "max_iters": 300})
def run(s: PhaseSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    check(s)
    memory("phase grid row", sample_bytes(s.trials, max(s.Ns), s.d, s.K * len(s.rs)), max_bytes)
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(seed, "teacher"))
    cells = []
    for N in s.Ns:
        cells += run_row(s, teacher, s.rs, N, seed)
        progress(f"  N={N}: success rate " + " ".join(f"{c['success_rate']:.2f}" for c in cells[-len(s.rs):]))
    cells.sort(key=lambda c: (c["r"], c["N"]))
    out.csv("cells.csv", cells)
    boundary = []
    for r in s.rs:
        rates = [c["success_rate"] for c in cells if c["r"] == r]
        boundary.append({"r": r, "N50": crossing(s.Ns, rates)})
    out.csv("boundary.csv", boundary)
    fit = fit_line([b["r"] for b in boundary], [b["N50"] for b in boundary])
    draw(s, cells, boundary, fit, out)
    nonfinite = sum(c["nonfinite"] for c in cells)
    return {"fits": {"boundary N50 = a·r + b": fit.to_dict() if fit else None},
            "lines": [f"phase boundary: {fit.describe('r', 'N50') if fit else 'not enough crossings to fit'}",
                      f"a / K = {fit.slope / s.K:.3g} samples per learner weight" if fit else ""],
            "nonfinite_trials": nonfinite, "boundary": boundary}


def draw(s, cells, boundary, fit, out) -> None:
    grid = torch.tensor([[c["success_rate"] for c in cells if c["r"] == r] for r in s.rs]).T  # (N, r)
    fig, ax = figure(width=5.6, height=4.2)
    image = ax.imshow(grid.numpy(), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      extent=(-0.5, len(s.rs) - 0.5, -0.5, len(s.Ns) - 0.5))
    ax.set_xticks(range(len(s.rs)), [str(r) for r in s.rs])
    ax.set_yticks(range(len(s.Ns)), [str(n) for n in s.Ns])
    ax.grid(False)

    pts = [(i, _interp(b["N50"], s.Ns)) for i, b in enumerate(boundary) if b["N50"] == b["N50"]]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "^", color="white", mec="black", ms=6,
                label="N50 (measured)")
    if fit:
        ax.plot(range(len(s.rs)), [_interp(fit.slope * r + fit.intercept, s.Ns) for r in s.rs], "r--", lw=1.2,
                label=f"fit N = {fit.slope:.1f}·r {fit.intercept:+.0f}")
        ax.legend(loc="upper left", frameon=True, facecolor="white", framealpha=0.85)
    ax.set_xlabel("r (inputs kept per neuron)")
    ax.set_ylabel("N (training samples)")
    ax.set_title(f"success rate, d={s.d}, K={s.K}, r*={s.r_star}, {s.trials} trials/cell")
    fig.colorbar(image, ax=ax, label="success rate")
    out.png("phase.png", fig)


def _interp(n: float, grid) -> float:
    """Position of n on a categorical axis whose ticks are at `grid` values (linear between ticks)."""
    if n <= grid[0]:
        return 0.0 if n == grid[0] else -0.5
    for i in range(1, len(grid)):
        if n <= grid[i]:
            return i - 1 + (n - grid[i - 1]) / (grid[i] - grid[i - 1])
    return len(grid) - 0.5
