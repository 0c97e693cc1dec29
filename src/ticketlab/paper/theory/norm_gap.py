"""Experiment `norm-gap`: the normalised norm gap between good and bad neurons vs the number of samples N.

gap = 1 - mean ||w_bad|| / mean ||w_good|| per trial (1 = bad neurons learned nothing). Claim (Theorem 3.1 of the
talk): ||w_good|| - ||w_bad|| >= 1 - Θ(1/sqrt(N)), i.e. 1 - gap ∝ N^(-1/2). Fitted: the log-log slope of
1 - gap against N (claim -0.5) and gap = a - c/sqrt(N) (linear in 1/sqrt(N)), each with a 95% CI.
"""

import math
from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import memory, positive
from ticketlab.paper.theory.features import FeatureSettings, feature_bytes
from ticketlab.paper.theory.fitting import finite_stats, fit_line, fit_loglog
from ticketlab.paper.theory.forms import compare_forms
from ticketlab.paper.theory.norms import train_model
from ticketlab.paper.theory.patchnet import goodness, train_patchnet
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.verdict import verdict


@dataclass(frozen=True)
class NormGapSettings(FeatureSettings):
    Ns: tuple[int, ...] = (50, 100, 200, 400, 800, 1600)
    model: str = "mlp"  # mlp | gnn


@experiment("norm-gap", "norm gap between good and bad neurons >= 1 - Θ(1/sqrt(N))", NormGapSettings,
            quick={"trials": 3, "Ns": (50, 100, 200), "max_iters": 400})
def run(s: NormGapSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    s.check_all()
    for N in s.Ns:
        positive("N (training samples)", N)
    memory("norm-gap", feature_bytes(s.trials, max(s.Ns), s.P, s.d, s.K), max_bytes)
    rows, nonfinite = [], 0
    for N in s.Ns:
        patterns, X, y, W0, alive = train_model(s, s.model, N, seed, N)
        res = train_patchnet(W0, X, y, alive, s.lr, s.max_iters)
        nonfinite += int((~res.finite).sum())
        _, good = goodness(res.weights, patterns)
        norms = res.weights.norm(dim=-1)
        g = (norms * good).sum(1) / good.sum(1)
        b = (norms * ~good).sum(1) / (~good).sum(1)  # nan when a trial has no bad neuron: excluded, counted
        gap = 1 - b / g
        rows += [{"N": N, "trial": t, "finite": bool(res.finite[t]), "gap": float(gap[t]),
                  "one_minus_gap": float(1 - gap[t]), "mean_good_norm": float(g[t]), "mean_bad_norm": float(b[t]),
                  "converged_at": float(res.converged_at[t])} for t in range(s.trials)]
        progress(f"  N={N}: median gap {_median(rows, N):.4f}")
    out.csv("trials.csv", rows)
    pts = [row for row in rows if row["finite"] and math.isfinite(row["gap"])]
    slope = fit_loglog([p["N"] for p in pts], [p["one_minus_gap"] for p in pts])
    linear = fit_line([1 / math.sqrt(p["N"]) for p in pts], [p["gap"] for p in pts])
    fits = {"log(1 - gap) vs log N": slope.to_dict() if slope else None,
            "gap = a + slope/sqrt(N)": linear.to_dict() if linear else None}
    lines = []
    if slope:
        lo, hi = slope.slope_ci
        lines.append(f"1 - gap ∝ N^{slope.slope:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] "
                     f"({'contains' if lo <= -0.5 <= hi else 'excludes'} the claimed -0.5; n={slope.n})")
    if linear:
        lines.append(linear.describe("1/sqrt(N)", "gap"))
    lines.append(f"trials without a bad neuron (gap undefined, excluded): {len(rows) - len(pts) - nonfinite}")
    draw(s, rows, fits, out)
    forms = compare_forms([p["N"] for p in pts], [p["one_minus_gap"] for p in pts], [p["trial"] for p in pts])
    fits["1 - gap vs N: forms"] = forms.to_dict() if forms else None
    word, text = forms.verdict(-0.5) if forms else ("inconclusive", "too few trials")
    gap = _stats(rows, max(s.Ns), "gap")["median"]
    text = f"median gap {gap:.3f} at N={max(s.Ns)}; 1 - gap vs N: {text}"
    lines.append(f"{word}: {text}")
    verdicts = [verdict("norm gap between good and bad neurons ≥ 1 - Θ(1/sqrt(N))", word, text, "norm_gap.png",
                        s.model)]
    return {"fits": fits, "lines": lines, "verdicts": verdicts, "nonfinite_trials": nonfinite}


def _stats(rows, N, key) -> dict:
    return finite_stats(torch.tensor([row[key] for row in rows if row["N"] == N and row["finite"]]))


def _median(rows, N) -> float:
    m = _stats(rows, N, "gap")["median"]
    return float("nan") if m is None else m


def draw(s, rows, fits, out) -> None:
    fig, (ax1, ax2) = figure(ncols=2, width=4.2, height=3.4)
    spread(ax1, list(s.Ns), [_stats(rows, N, "gap") for N in s.Ns], "gap (median, IQR)")
    fit = fits["gap = a + slope/sqrt(N)"]
    if fit:
        grid = torch.linspace(min(s.Ns), max(s.Ns), 100)
        ax1.plot(grid, fit["intercept"] + fit["slope"] / grid.sqrt(), "k--", lw=1,
                 label=f"fit {fit['intercept']:.3f} {fit['slope']:+.3f}/sqrt(N)")
    ax1.set_xscale("log")
    ax1.set_xlabel("N (training samples)")
    ax1.set_ylabel("gap = 1 - mean||w_bad|| / mean||w_good||")
    ax1.set_title(f"{s.model}: K={s.K}, d={s.d}, {s.trials} trials")
    ax1.legend()
    spread(ax2, list(s.Ns), [_stats(rows, N, "one_minus_gap") for N in s.Ns], "1 - gap")
    fit = fits["log(1 - gap) vs log N"]
    if fit:
        grid = torch.tensor([float(min(s.Ns)), float(max(s.Ns))])
        ax2.plot(grid, torch.exp(fit["intercept"] + fit["slope"] * grid.log()), "k--", lw=1,
                 label=f"slope {fit['slope']:.2f} (claim -0.5)")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("N (training samples)")
    ax2.set_ylabel("1 - gap")
    ax2.legend()
    out.png("norm_gap.png", fig)
