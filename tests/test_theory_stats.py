"""The theory lab's statistics against known answers: synthetic data with a known exponent, a known trial (teacher)
effect and known censoring."""

import math

import pytest
import torch

from ticketlab.paper.theory.censored import median_line, tobit
from ticketlab.paper.theory.fitting import fit_line, fit_loglog
from ticketlab.paper.theory.forms import compare_forms
from ticketlab.paper.theory.trialfit import bootstrap_trials, mean_ci, per_trial_slopes, t_quantile
from ticketlab.paper.theory.verdict import interval_word, verdict


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def censored_line(seed, n=300, slope=-3.0, cap=1.2):
    x = torch.rand(n, generator=gen(seed), dtype=torch.float64)
    y = 2.0 + slope * x + 0.3 * torch.randn(n, generator=gen(seed + 1000), dtype=torch.float64)
    return x, y.clamp(max=cap)


def test_tobit_recovers_the_slope_where_least_squares_on_capped_values_is_biased():
    x, y = censored_line(0)
    fit = tobit(x, y, 1.2)
    assert 0.2 < fit.censored_fraction < 0.5  # known censoring: P(2 - 3x + e > 1.2)
    assert fit.slope_ci[0] < -3.0 < fit.slope_ci[1]
    assert fit.sigma == pytest.approx(0.3, rel=0.2)
    naive = fit_line(x, y)
    assert naive.slope_ci[0] > -3.0 + 0.3  # least squares on the capped values: biased flat, CI misses -3
    assert naive.slope > fit.slope_ci[1]


def test_tobit_interval_covers_the_true_slope_at_the_nominal_rate():
    covered = sum(tobit(*censored_line(s, n=120)[:2], 1.2).slope_ci[0] < -3.0 < tobit(
        *censored_line(s, n=120)[:2], 1.2).slope_ci[1] for s in range(40))
    assert covered >= 34  # 95% nominal: 38 expected, >= 34 of 40 with probability > 0.99


def test_tobit_without_censoring_is_least_squares_and_median_line_skips_half_censored_groups():
    x = torch.arange(10.0).repeat(5)
    y = 1 + 0.5 * x + 0.1 * torch.randn(50, generator=gen(1))
    fit, ols = tobit(x, y, 100.0), fit_line(x, y)
    assert fit.censored == 0 and fit.slope == pytest.approx(ols.slope, abs=1e-6)
    capped = median_line(x, y.clamp(max=4.25), 4.25)
    assert capped["groups_censored_half_or_more"] == 3  # x = 7, 8, 9 sit above the cap
    assert capped["fit"]["slope"] == pytest.approx(0.5, abs=0.05)


def trials_sharing_a_teacher(seed, trials=8, exponent=0.5, spread=0.15):
    """Each trial (teacher) has its own exponent 0.5 + u_t, observed at the same 6 x values: the pooled points are
    not independent, the per-trial slopes are."""
    x = torch.tensor([1.0, 2, 4, 8, 16, 32], dtype=torch.float64)
    u = spread * torch.randn(trials, generator=gen(seed), dtype=torch.float64)
    noise = 0.02 * torch.randn(trials, 6, generator=gen(seed + 1), dtype=torch.float64)
    y = x.pow(exponent + u.unsqueeze(1)) * noise.exp()
    return x.repeat(trials), y.flatten(), torch.arange(trials).repeat_interleave(6)


def test_per_trial_slope_interval_covers_the_true_exponent_and_the_pooled_one_does_not():
    runs = [per_trial_slopes(*trials_sharing_a_teacher(s), log=True) for s in range(200)]
    per_trial = sum(r.contains(0.5) for r in runs) / len(runs)
    pooled = sum(r.pooled_ci[0] <= 0.5 <= r.pooled_ci[1] for r in runs) / len(runs)
    assert per_trial >= 0.9  # nominal 0.95
    assert pooled < 0.75  # the pooled interval ignores the shared teacher
    width = sum((r.ci[1] - r.ci[0]) / (r.pooled_ci[1] - r.pooled_ci[0]) for r in runs) / len(runs)
    assert width > 1.3


def test_within_group_slope_removes_a_between_group_effect():
    # y depends on the group (r) only; within a group it does not follow x at all.
    group = torch.tensor([1, 1, 1, 2, 2, 2, 3, 3, 3]).repeat(4)
    x = torch.tensor([1.0, 2, 3, 2, 3, 4, 3, 4, 5]).repeat(4)
    y = group.double() * 10 + 0.01 * torch.randn(36, generator=gen(2), dtype=torch.float64)
    trial = torch.arange(4).repeat_interleave(9)
    assert per_trial_slopes(x, y, trial).slope > 4  # across groups: a strong spurious slope
    assert abs(per_trial_slopes(x, y, trial, group=group).slope) < 0.05


def test_fit_form_comparison_picks_the_right_form():
    x = torch.tensor([10.0, 20, 40, 80, 160, 320], dtype=torch.float64).repeat(10)
    trial = torch.arange(10).repeat_interleave(6)
    power = x.sqrt() * (0.03 * torch.randn(60, generator=gen(3), dtype=torch.float64)).exp()
    pw = compare_forms(x, power, trial)
    assert pw.best == "power law" and not pw.bends and pw.exponent.contains(0.5)
    assert pw.verdict(0.5)[0] == "agrees" and pw.verdict(0.7)[0] == "disagrees"
    line = 50 + x + 2 * torch.randn(60, generator=gen(4), dtype=torch.float64)  # log-log slope 0.17 -> 0.87
    ln = compare_forms(x, line, trial)
    assert ln.best == "line" and ln.bends
    first, last = ln.local_range()
    assert first < 0.3 and last > 0.7
    word, text = ln.verdict(0.5)
    assert word == "partly" and "not a single power law" in text


def test_bootstrap_over_trials_and_mean_interval():
    values = torch.randn(30, generator=gen(5), dtype=torch.float64) + 2.0
    mean, ci = mean_ci(values)
    full, bci, ok = bootstrap_trials(lambda idx: float(values[idx].mean()), 30, resamples=300)
    assert full == pytest.approx(mean) and ok == 300
    assert bci[0] < 2.0 < bci[1] and ci[0] < 2.0 < ci[1]
    assert (bci[1] - bci[0]) == pytest.approx(ci[1] - ci[0], rel=0.3)


def test_t_quantile_and_fallback_agree():
    scipy_stats = pytest.importorskip("scipy.stats")
    assert t_quantile(9) == pytest.approx(float(scipy_stats.t.ppf(0.975, 9)))


def test_verdict_vocabulary():
    assert interval_word((0.1, 0.3), +1) == "agrees" and interval_word((-0.3, -0.1), +1) == "disagrees"
    assert interval_word((-0.1, 0.3), +1) == "inconclusive" and interval_word((math.nan, 1), -1) == "inconclusive"
    assert verdict("c", "partly", "e")["verdict"] == "partly"
    with pytest.raises(Exception, match="verdict must be one of"):
        verdict("c", "maybe", "e")


def test_loglog_fit_still_recovers_a_clean_exponent():
    x = torch.arange(1.0, 21.0)
    assert fit_loglog(x, 3 * x**0.5).slope == pytest.approx(0.5)


def test_loglog_slope_recovers_a_known_exponent_and_skips_what_cannot_be_logged():
    from ticketlab.paper.theory.fitting import loglog_slope

    xs = [1.0, 2.0, 4.0, 8.0, 16.0]
    assert abs(loglog_slope(xs, [3 * x**0.5 for x in xs]) - 0.5) < 1e-12
    assert abs(loglog_slope(xs, [3 * x**-1.5 for x in xs[:3]] + [float("nan"), 0.0]) + 1.5) < 1e-12
    assert math.isnan(loglog_slope(xs, [1.0, float("inf"), 0.0, -1.0, float("nan")]))
