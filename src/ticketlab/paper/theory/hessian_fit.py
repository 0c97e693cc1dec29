"""Fits and verdicts of `hessian`: per-trial slopes for lambda_min / lambda_pop, and a censored (Tobit) fit for the
radius, whose values at the probed grid's end are lower bounds, with a bootstrap over trials for its interval.
Everything here is on the oracle masks (the control); the found variant's verdict is in hessian_found_fit.py."""

import math

import torch

from ticketlab.paper.theory.censored import median_line, tobit
from ticketlab.paper.theory.fitting import fit_line
from ticketlab.paper.theory.forms import compare_forms
from ticketlab.paper.theory.trialfit import bootstrap_trials, per_trial_slopes
from ticketlab.paper.theory.verdict import interval_word, verdict

STEEPER = "the pruned network's convex region is steeper: lambda_min ≈ lambda_pop(r)·(1 - c·sqrt(r/N))"
LARGER = "the pruned network's convex region is larger: radius ≈ 1 - c·sqrt(r/N)"
ORACLE = "oracle"  # the control: variants.py names it so in every Part-1 experiment


def lambda_fit(rows, fits, prefix: str = "") -> tuple[str, str] | None:
    """Per-trial slope of lambda_min/lambda_pop on sqrt(r/N) and the form of 1 - ratio: (word, evidence), with
    the fits stored under `prefix` (None when fewer than 2 trials have a slope)."""
    x, y, t = ([row[k] for row in rows] for k in ("sqrt_r_over_N", "lambda_ratio", "trial"))
    slope = per_trial_slopes(x, y, t)
    if slope is None:
        return None
    pooled = fit_line(x, y)
    fits[f"{prefix}lambda_min/lambda_pop = a + slope·sqrt(r/N)"] = {**pooled.to_dict(), "per_trial": slope.to_dict()}
    forms = compare_forms(x, [1 - v for v in y], t)  # the claim's form: 1 - ratio ∝ sqrt(r/N)^1
    fits[f"{prefix}1 - lambda ratio vs sqrt(r/N): forms"] = forms.to_dict() if forms else None
    word = interval_word(slope.ci, -1)
    text = f"slope of lambda_min/lambda_pop on sqrt(r/N): {slope.describe()}"
    if forms:
        form_word, form_text = forms.verdict(1.0)
        text += f"; form of 1 - ratio vs sqrt(r/N) (claim: exponent 1): {form_text}"
        word = "partly" if word == "agrees" and form_word != "agrees" else word
    return word, text


def _lambda(rows, lines, fits):
    word, text = lambda_fit(rows, fits) or ("inconclusive", "fewer than 2 trials with a slope")
    lines.append(f"{word}: {text}")
    return verdict(STEEPER, word, text, "hessian.png", ORACLE)


def _radius(s, rows, lines, fits, seed):
    probed = [row for row in rows if math.isfinite(row["radius"])]
    if not probed:
        return verdict(LARGER, "inconclusive", "no radius probed", variant=ORACLE)
    cap = s.radii[-1]
    x = torch.tensor([row["sqrt_r_over_N"] for row in probed], dtype=torch.float64)
    y = torch.tensor([row["radius"] for row in probed], dtype=torch.float64)
    trial = torch.tensor([row["trial"] for row in probed])
    fit = tobit(x, y, cap)
    medians = median_line(x, y, cap)
    if fit is None:
        return verdict(LARGER, "inconclusive", "fewer than 3 uncensored radii", variant=ORACLE)

    def slope(idx):
        pick = torch.cat([(trial == int(i)).nonzero().flatten() for i in idx])
        f = tobit(x[pick], y[pick], cap, steps=30)
        return f.slope if f else float("nan")

    _, ci, ok = bootstrap_trials(slope, s.trials, resamples=s.resamples, seed=seed)
    fits["radius = a + slope·sqrt(r/N)"] = {**fit.to_dict(), "intercept": fit.intercept,
                                            "bootstrap_slope_ci": ci, "resamples_with_fit": ok,
                                            "median_line": medians}
    text = (f"censored at the probe's end {cap:g}: {fit.censored} of {fit.n} trials "
            f"({100 * fit.censored_fraction:.0f}%); Tobit radius = {fit.intercept:.2f} {fit.slope:+.2f}·sqrt(r/N), "
            f"slope CI [{ci[0]:.2f}, {ci[1]:.2f}] (bootstrap over teachers); medians of the groups censored < 50% "
            f"({len(medians['medians'])} groups, {medians['groups_censored_half_or_more']} left out)")
    word = interval_word(ci, -1)
    if word == "agrees" and medians["fit"] and not ci[0] <= medians["fit"]["slope"] <= ci[1]:
        # One straight line cannot serve both the censored block and the uncensored medians: not linear.
        word = "partly"
        text += (f"; the line through those medians has slope {medians['fit']['slope']:.2f}, outside the censored "
                 f"fit's interval: the radius falls with sqrt(r/N) but not linearly")
    lines.append(f"{word}: radius: {text}")
    return verdict(LARGER, word, text, "hessian.png", ORACLE)


def summarise(s, rows, seed: int):
    fits, lines = {}, []
    verdicts = [_lambda(rows, lines, fits), _radius(s, rows, lines, fits, seed)]
    return fits, lines, verdicts
