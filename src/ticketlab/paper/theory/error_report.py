"""Fits, verdicts and figure of `error`: the form of error(r) and error(N) per variant (forms.compare_forms)."""

import torch

from ticketlab.paper.theory.fitting import finite_stats
from ticketlab.paper.theory.forms import compare_forms
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.variants import LABELS
from ticketlab.paper.theory.verdict import verdict

CLAIMS = {"r": ("generalisation error ∝ sqrt(r) at fixed N", 0.5), "N": ("generalisation error ∝ 1/sqrt(N)", -0.5)}


def _points(rows, sweep, sigma, v):
    return [row for row in rows if row["sweep"] == sweep and row["sigma"] == sigma and row["variant"] == v
            and row["finite"]]


def summarise(s, rows):
    fits, lines, verdicts = {}, [], []
    for sigma in s.sigmas:
        for v in s.variants:
            for sweep, (claim, exponent) in CLAIMS.items():
                pts = _points(rows, sweep, sigma, v)
                forms = compare_forms([p[sweep] for p in pts], [p["final_error"] for p in pts],
                                      [p["trial"] for p in pts])
                key = f"sigma={sigma}, {v}: error vs {sweep}"
                fits[key] = forms.to_dict() if forms else None
                if forms is None:
                    word, text = "inconclusive", "too few finite trials"
                else:
                    word, text = forms.verdict(exponent)
                    local = ", ".join(f"{p['x0']:g}→{p['x1']:g}: {p['slope']:.2f}" for p in forms.local)
                    text += f"; local slopes {local}"
                recall = [p["support_recall"] for p in pts if p["support_recall"] == p["support_recall"]]
                if recall:
                    text += f"; found masks cover {100 * sum(recall) / len(recall):.0f}% of the support on average"
                lines.append(f"{key} ({LABELS[v]}): {word}: {text}")
                verdicts.append(verdict(f"{claim} (σ={sigma})", word, text, "error.png", v))
    return fits, lines, verdicts


def draw(s, rows, fits, out) -> None:
    fig, axes = figure(ncols=2, width=4.4, height=3.6)
    for ax, sweep in zip(axes, ("r", "N"), strict=True):
        xs = list(s.rs) if sweep == "r" else list(s.Ns)
        for sigma in s.sigmas:
            for v, marker in zip(s.variants, "os^v", strict=False):
                pts = _points(rows, sweep, sigma, v)
                stats = [finite_stats(torch.tensor([p["final_error"] for p in pts if p[sweep] == x])) for x in xs]
                spread(ax, xs, stats, f"{v}, σ={sigma}", marker=marker)
        grid = torch.tensor([float(xs[0]), float(xs[-1])])
        ref = 0.02 * (grid / grid[0]) ** (0.5 if sweep == "r" else -0.5)
        ax.plot(grid, ref, "k:", lw=1, label="slope ±1/2 (claim)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("r (inputs kept per neuron)" if sweep == "r" else "N (training samples)")
        ax.set_ylabel("aligned ||W - W*|| / ||W*||")
        ax.set_title(f"N={s.N_fixed}" if sweep == "r" else f"r={s.r_fixed}", fontsize=8)
        ax.legend(fontsize=6)
    out.png("error.png", fig)
