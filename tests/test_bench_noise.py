"""The benchmarks' statistics on known timings: medians, ranges, noise, and no verdict when noise exceeds the effect."""

import math

import pytest

from ticketlab.bench.noise import Load, cv, paired_ratio, spread, verdict


def test_cv_of_known_repeats():
    assert cv([1.0, 1.0, 1.0]) == 0.0
    assert cv([9.0, 11.0]) == pytest.approx(math.sqrt(2) / 10)
    assert math.isnan(cv([3.0]))


def test_paired_ratio_median_range_and_noise():
    r = paired_ratio([2.0, 4.0, 3.0], [1.0, 1.0, 1.0])
    assert (r.median, r.low, r.high) == (3.0, 2.0, 4.0)
    assert r.noise == pytest.approx(cv([2.0, 4.0, 3.0]))  # B is steady: the noise is A's
    assert str(r).startswith("3.00x (2.00-4.00, noise ±33.3%")


def test_paired_ratio_refuses_unpaired():
    with pytest.raises(ValueError, match="as many"):
        paired_ratio([1.0, 2.0], [1.0])


def test_clear_effect_gets_a_verdict():
    steady = paired_ratio([4.0, 4.1, 3.9], [1.0, 1.01, 0.99])  # ~4x, noise ~2.5%
    assert verdict(steady, target=3.5) == "met"
    assert verdict(steady, target=5.0) == "not met"
    assert verdict(steady, target=5.0, higher_is_better=False) == "met"


def test_noise_larger_than_effect_gets_no_verdict():
    noisy = paired_ratio([1.0, 3.0, 1.5], [1.0, 1.0, 1.0])  # median 1.5x but the repeats move by ~50%
    assert noisy.within_noise()
    assert verdict(noisy, target=1.2).startswith("no verdict: too noisy")
    one = paired_ratio([2.0], [1.0])  # one repeat: noise unknown, never a verdict
    assert one.within_noise() and verdict(one, target=1.5).startswith("no verdict")


def test_target_inside_the_noise_band_gets_no_verdict():
    r = paired_ratio([3.4, 3.6, 3.5], [1.0, 1.0, 1.0])  # 3.5x +- 2.9%: clearly not 1, but 3.45 is within the noise
    assert not r.within_noise()
    assert verdict(r, target=3.45).startswith("no verdict")
    assert verdict(r, target=3.0) == "met"


def test_busy_machine_gets_no_verdict():
    steady = paired_ratio([4.0, 4.0], [1.0, 1.0])
    assert verdict(steady, target=3.5, busy=True).startswith("no verdict: the machine is busy")


@pytest.mark.parametrize(("before", "after", "cpus", "threads", "busy"), [
    (0.1, 2.0, 2, 2, False),  # idle, then our 2 threads
    (3.0, 4.5, 2, 2, True),   # others already fill both cores
    (0.9, 1.5, 2, 1, False),  # one core free for our one thread
    (1.8, 2.9, 2, 1, True),
])
def test_load_busy(before, after, cpus, threads, busy):
    load = Load(before, after, cpus, threads)
    assert load.busy is busy
    assert f"{cpus} cores, {threads} threads used" in str(load)


def test_spread_line():
    assert spread([1.0, 2.0, 3.0]) == "median 2 s (1-3, cv 50.0%)"
    assert spread([0.5], unit="ms", scale=1e3) == "median 500 ms (500-500)"
