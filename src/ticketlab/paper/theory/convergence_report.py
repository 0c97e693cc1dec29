"""Fits, verdicts and figure of `convergence` (one slope per trial throughout; see convergence.py)."""

import math

import torch

from ticketlab.paper.theory.fitting import finite_stats
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.trialfit import per_trial_slopes
from ticketlab.paper.theory.variants import LABELS
from ticketlab.paper.theory.verdict import interval_word, verdict

ITER_CLAIM = "fewer iterations to converge with pruning (Figure 5)"
RATE_CLAIM = "convergence rate ~ 1 - c·sqrt(r/N)"


def _cols(pts, *keys):
    return [[p[k] for p in pts] for k in keys]


def _fits(s, rows, v, method):
    pts = [row for row in rows if row["variant"] == v and row["method"] == method and row["finite"]]
    first = [p for p in pts if p["N"] == s.Ns[0]]
    iters = per_trial_slopes(*_cols(first, "r"), [math.log(p["iterations_to_eps"]) for p in first],
                             [p["trial"] for p in first])
    x, y, t, g = _cols(pts, "sqrt_r_over_N", "speed", "trial", "r")
    return {f"log iterations vs r at N={s.Ns[0]}": iters, "speed vs sqrt(r/N), across the grid":
            per_trial_slopes(x, y, t), "speed vs sqrt(r/N), within r (only N varies)":
            per_trial_slopes(x, y, t, group=g)}, pts


def _text(fit) -> str:
    return "n/a (fewer than 2 trials with a slope)" if fit is None else fit.describe()


def summarise(s, rows, methods):
    fits, lines, verdicts = {}, [], []
    for v in s.variants:
        for method in methods:
            f, pts = _fits(s, rows, v, method)
            fits[f"{v}, {method}"] = {k: (x.to_dict() if x else None) for k, x in f.items()}
            (it_key, it), (_, across), (_, within) = f.items()
            reached = sum(1 for p in pts if p["N"] == s.Ns[0] and p["iterations_to_eps"] == p["iterations_to_eps"])
            total = sum(1 for p in pts if p["N"] == s.Ns[0])
            lines.append(f"{v} ({LABELS[v]}), {method}: slope of {it_key}: {_text(it)}; {reached}/{total} trials "
                         f"reached eps at N={s.Ns[0]}; speed vs sqrt(r/N) across the grid {_text(across)}, within r "
                         f"{_text(within)}")
            if method != "GD":
                continue
            word = interval_word(it.ci, +1) if it else "inconclusive"
            verdicts.append(verdict(ITER_CLAIM, word, f"per-trial slope of log(iterations to {s.eps:g}) on r at "
                                    f"N={s.Ns[0]}: {_text(it)} (positive = pruning cuts iterations); "
                                    f"{reached}/{total} reached eps", "convergence.png", v))
            verdicts.append(verdict(RATE_CLAIM, *_rate_verdict(across, within), "convergence.png", v))
    return fits, lines, verdicts


def _rate_verdict(across, within):
    if across is None or within is None:
        return "inconclusive", "too few trials reached the local phase to fit a rate"
    a, w = interval_word(across.ci, -1), interval_word(within.ci, -1)
    text = f"speed vs sqrt(r/N): across the grid {across.describe()}; at fixed r (N only) {within.describe()}"
    if a == "agrees" and w == "agrees":
        return "agrees", text
    if a == "agrees":
        return "partly", text + ": the speed-up follows r (the r-input learner's curvature), not N as sqrt(r/N) says"
    return ("disagrees" if a == "disagrees" else "inconclusive"), text


def draw(s, rows, methods, out) -> None:
    fig, (ax1, ax2) = figure(ncols=2, width=4.6, height=3.6)
    rates = [1 - r / s.d for r in s.rs]
    for v in s.variants:
        for method, marker in zip(methods, "os", strict=False):
            stats = [finite_stats(torch.tensor([row["iterations_to_eps"] for row in rows if row["N"] == s.Ns[0]
                                                and row["method"] == method and row["variant"] == v
                                                and row["r"] == r and row["finite"]])) for r in s.rs]
            spread(ax1, rates, stats, f"{v}, {method}", marker=marker)
            pts = [row for row in rows if row["method"] == method and row["variant"] == v and row["finite"]
                   and row["rate"] == row["rate"]]
            ax2.scatter([p["sqrt_r_over_N"] for p in pts], [p["speed"] for p in pts], s=6, alpha=0.4,
                        marker=marker, label=f"{v}, {method}")
    ax1.set_xlabel("pruning rate 1 - r/d")
    ax1.set_ylabel(f"iterations to aligned error {s.eps:g}")
    ax1.set_title(f"N={s.Ns[0]}, d={s.d}, K={s.K}; median, IQR (reached only)", fontsize=8)
    ax1.legend(fontsize=6)
    ax2.set_xlabel("sqrt(r/N)")
    ax2.set_ylabel("local speed 1 - rate (per iteration)")
    ax2.set_title(f"N ∈ {list(s.Ns)}; {s.trials} trials", fontsize=8)
    ax2.legend(fontsize=6)
    out.png("convergence.png", fig)
