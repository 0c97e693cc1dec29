"""Verdicts and figure of `imp`: per start, where the test error is lowest, the paired gain over the dense learner
(a t interval over trials of the log ratio), and how much of the teacher's support the ticket keeps."""

import math

import torch

from ticketlab.paper.theory.fitting import finite_stats
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.trialfit import mean_ci
from ticketlab.paper.theory.verdict import verdict

LABELS = {"random": "random init (main line)", "near": "start near W* (control)"}
BEST = "IMP's test error is lowest near the teacher's pruning rate 1 - r*/d, below the dense learner's"
SUPPORT = "magnitude pruning (IMP) recovers the teacher's support"


def _stat(rows, level, key, start) -> dict:
    st = finite_stats(torch.tensor([row[key] for row in rows if row["level"] == level and row["finite"]
                                    and row["start"] == start]))
    return st if st["median"] is not None else {**st, "median": float("nan")}


def _per_trial(rows, start, level, key):
    return {row["trial"]: row[key] for row in rows if row["start"] == start and row["level"] == level
            and row["finite"]}


def imp_verdicts(s, rows):
    lines, verdicts, best = [], [], {}
    levels = sorted({row["level"] for row in rows})
    for start in s.starts:
        medians = [(_stat(rows, lv, "test_mse", start)["median"], lv) for lv in levels]
        level = min((m, lv) for m, lv in medians if m == m)[1]
        r = next(row["r"] for row in rows if row["level"] == level)
        dense, ticket = _per_trial(rows, start, 0, "test_mse"), _per_trial(rows, start, level, "test_mse")
        ratio = [math.log(ticket[t] / dense[t]) for t in ticket if t in dense and ticket[t] > 0 and dense[t] > 0]
        mean, ci = mean_ci(ratio)
        near = 0.67 * s.r_star <= r <= 1.5 * s.r_star
        word = "agrees" if near and ci[1] < 0 else "partly" if ci[1] < 0 or near else "disagrees"
        text = (f"lowest median test MSE at r={r} (pruning rate {1 - r / s.d:.2f}; teacher {1 - s.r_star / s.d:.2f}); "
                f"test MSE ticket/dense = {math.exp(mean):.3g}, 95% CI [{math.exp(ci[0]):.3g}, {math.exp(ci[1]):.3g}] "
                f"(paired over {len(ratio)} trials)")
        verdicts.append(verdict(BEST, word, text, "imp.png", LABELS[start]))
        at = min((lv for lv in levels), key=lambda lv: abs(next(row["r"] for row in rows if row["level"] == lv)
                                                            - s.r_star))
        r_at = next(row["r"] for row in rows if row["level"] == at)
        rec, prec = _stat(rows, at, "recall", start), _stat(rows, at, "precision", start)
        word = "agrees" if rec["median"] >= 0.95 else "partly" if rec["median"] >= 0.5 else "disagrees"
        text = (f"at r={r_at} (closest level to r*={s.r_star}): support recall median {rec['median']:.2f} "
                f"(IQR {rec['q25']:.2f}-{rec['q75']:.2f}), precision median {prec['median']:.2f}")
        verdicts.append(verdict(SUPPORT, word, text, "imp.png", LABELS[start]))
        lines += [f"{LABELS[start]}: {v['verdict']}: {v['evidence']}" for v in verdicts[-2:]]
        best[start] = {"level": level, "r": r, "pruning_rate": 1 - r / s.d}
    return lines, verdicts, best


def draw(s, rows, out) -> None:
    fig, (ax1, ax2) = figure(ncols=2, width=4.4, height=3.6)
    levels = sorted({row["level"] for row in rows})
    rates = [next(row["pruning_rate"] for row in rows if row["level"] == lv) for lv in levels]
    for start, marker in zip(s.starts, "os", strict=False):
        spread(ax1, rates, [_stat(rows, lv, "test_mse", start) for lv in levels], f"test MSE, {LABELS[start]}",
               marker=marker)
        spread(ax2, rates, [_stat(rows, lv, "recall", start) for lv in levels], f"recall, {LABELS[start]}",
               marker=marker)
        spread(ax2, rates, [_stat(rows, lv, "precision", start) for lv in levels], f"precision, {start}",
               marker=None)
    ax1.set_yscale("log")
    for ax in (ax1, ax2):
        ax.axvline(1 - s.r_star / s.d, color="gray", ls=":", label="1 - r*/d")
        ax.set_xlabel("pruning rate 1 - r/d")
        ax.legend(fontsize=6)
    ax1.set_title(f"IMP on the teacher: N={s.N}, σ={s.sigma}, {s.trials} trials", fontsize=8)
    ax2.set_ylabel("support precision / recall (matched neurons)")
    out.png("imp.png", fig)
