"""The verdict of `hessian`'s found variant (hessian_found.py), with the same per-trial slope and form comparison
as the oracle control, plus what the control cannot show: how often magnitude pruning recovers the support.

The claim is about the convex region around the minimiser W* of the pruned network, so it is tested on the cells
whose found mask covers the teacher's support (there W*⊙mask = W*). Cells that miss part of it are counted and
reported, not fitted for the verdict: W*⊙mask is not a stationary point there, so the claim's object does not
exist on that mask. Their numbers (and a fit over all cells) stay in results.json and found_trials.csv.
"""

import statistics

from ticketlab.paper.theory.hessian_fit import STEEPER, lambda_fit
from ticketlab.paper.theory.trialfit import mean_ci
from ticketlab.paper.theory.verdict import verdict

FOUND = "found"  # variants.py's name: dense student from a random start, one-shot magnitude pruning


def _missed_cells(found) -> dict:
    cells = {}
    for row in found:
        key = f"r={row['r']} N={row['N']}"
        hit, total = cells.get(key, (0, 0))
        cells[key] = (hit + (not row["covers_support"]), total + 1)
    return {k: f"{m}/{n}" for k, (m, n) in cells.items() if m}


def _paired_difference(oracle, covering):
    """found − oracle lambda ratio at the same (trial, r, N), averaged per trial, t over trials."""
    control = {(row["trial"], row["r"], row["N"]): row["lambda_ratio"] for row in oracle}
    per_trial = {}
    for row in covering:
        per_trial.setdefault(row["trial"], []).append(row["lambda_ratio"] - control[row["trial"], row["r"], row["N"]])
    return mean_ci([statistics.fmean(v) for v in per_trial.values()])


def _median(values) -> float:
    return statistics.median(values) if values else float("nan")


def found_verdict(oracle, found, lines, fits) -> dict:
    covering = [row for row in found if row["covers_support"]]
    missed = _missed_cells(found)
    everywhere = lambda_fit(found, fits, "found, all cells: ")
    fit = lambda_fit(covering, fits, "found, cells covering the support: ")
    diff, ci = _paired_difference(oracle, covering)
    grads = {k: _median([row["masked_gradient_norm"] for row in found if row["covers_support"] == k])
             for k in (True, False)}
    recall = statistics.fmean(row["support_recall"] for row in found)
    fits["found: support recovery"] = {
        "cells": len(found), "cells_covering_support": len(covering), "mean_support_recall": recall,
        "cells_missing_support (missed/trials)": missed, "found_minus_oracle_lambda_ratio": {"mean": diff, "ci": ci},
        "median_masked_gradient_norm": {"covering": grads[True], "missing": grads[False]}}
    text = (f"found masks cover the teacher's support in {len(covering)} of {len(found)} (trial, r, N) cells "
            f"(mean support recall {recall:.3f})")
    if missed:
        text += (f"; missed in {', '.join(f'{k}: {v}' for k, v in missed.items())}, where W*⊙mask is not a "
                 f"minimiser (median masked gradient norm {grads[False]:.2g} vs {grads[True]:.2g} on covering "
                 f"masks), so the region the claim describes does not exist on those masks")
    if fit is None:
        word = "inconclusive"
        text += "; fewer than 2 trials with a slope on the covering cells"
    else:
        word, evidence = fit
        text += f"; on the covering cells, {evidence}; found − oracle ratio at the same cell {diff:.3g}, 95% CI " \
                f"[{ci[0]:.3g}, {ci[1]:.3g}] (per-trial means)"
        word = "partly" if word == "agrees" and missed else word
    if everywhere and missed:
        text += f"; over all cells, W*⊙mask wherever it is: {everywhere[1]}"
    lines.append(f"{word}: found masks: {text}")
    return verdict(STEEPER, word, text, "hessian.png", FOUND)
