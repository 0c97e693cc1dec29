"""The benchmarks' statistics on known timings: medians, ranges, noise, and no verdict when noise exceeds the effect."""

import math
import os
import subprocess
import sys
import time

import pytest

from ticketlab.bench.noise import Load, cv, load_mark, load_since, machine_cpu_seconds, paired_ratio, spread, verdict


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


@pytest.mark.parametrize(("before", "after", "cpus", "threads", "others", "used", "busy"), [
    (0.1, 2.0, 2, 2, None, None, False),  # load averages only: idle, then our 2 threads
    (3.0, 4.5, 2, 2, None, None, True),   # others already fill both cores
    (0.9, 1.5, 2, 1, None, None, False),  # one core free for our one thread
    (1.8, 2.9, 2, 1, None, None, True),
    (1.0, 2.0, 2, 2, 0.1, 1.9, False),  # the average still holds a run just before; the CPU time says no one else ran
    (0.1, 2.0, 2, 2, 1.2, 0.8, True),   # another process took more than the cores we left free
    (0.5, 1.5, 2, 1, 1.1, 0.9, True),   # a full machine: the other work took the core ours shared with it
    (0.3, 1.3, 4, 1, 1.0, 1.0, False),  # one other job on one of 4 cores, three left for our one thread
])
def test_load_busy(before, after, cpus, threads, others, used, busy):
    load = Load(before, after, cpus, threads, others, used)
    assert load.busy is busy
    assert f"{cpus} cores, {threads} threads used" in str(load)
    assert ("other work used" in str(load)) == (others is not None)


@pytest.mark.skipif(machine_cpu_seconds() is None, reason="no /proc/stat here")
def test_our_own_work_is_not_counted_as_other_work():
    """A child process spinning for 0.6 s between the marks is ours: the machine's busy time less ours leaves it
    out."""
    mark, machine = load_mark(), machine_cpu_seconds()
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.6\n"
                    "while time.process_time() < end: pass"], check=True)
    load = load_since(mark, threads=1)
    busy_cores = (machine_cpu_seconds() - machine) / (time.monotonic() - start)
    assert load.others is not None and 0 <= load.others <= busy_cores - 0.4


def test_spread_line():
    assert spread([1.0, 2.0, 3.0]) == "median 2 s (1-3, cv 50.0%)"
    assert spread([0.5], unit="ms", scale=1e3) == "median 500 ms (500-500)"


@pytest.mark.skipif(machine_cpu_seconds() is None, reason="no /proc/stat here")
def test_bench_quick_on_a_loaded_machine_gives_no_verdict():
    """`ticketlab bench --quick` while other processes keep every core busy: it says so and judges no target."""
    from .conftest import run_cli

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        result = run_cli("bench", "--quick", "--only", "training", "--threads", "1", "--quiet")
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "busy: figures too noisy to judge" in out and "no verdict: the machine is busy" in out
    assert not any(line.endswith((": met", ": not met")) for line in out.splitlines())
