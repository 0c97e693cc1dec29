"""The statistics every benchmark prints, in one place: medians, ranges and a noise figure of repeated, interleaved
timings, the machine load seen, and a verdict only when the noise is smaller than the effect.

Noise is the larger coefficient of variation (stdev / mean) of the two sides' repeats: how much one measurement of
the same thing moves from repeat to repeat. A ratio is only told apart from 1 (or a target from the measurement)
when that relative distance exceeds the noise; otherwise the benchmark says the figures are too noisy."""

import math
import os
import statistics
from dataclasses import dataclass


def cv(xs) -> float:
    """Coefficient of variation of the repeats; nan for fewer than two (the noise is then unknown)."""
    xs = list(xs)
    if len(xs) < 2:
        return math.nan
    mean = statistics.fmean(xs)
    return statistics.stdev(xs) / mean if mean else math.nan


@dataclass(frozen=True)
class Ratio:
    """a_i / b_i over paired (interleaved) repeats: their median, range, and the noise of the two sides."""

    median: float
    low: float
    high: float
    noise: float

    def within_noise(self, reference: float = 1.0) -> bool:
        """True when the noise is as large as the distance from `reference` (or unknown): no conclusion."""
        return not self.noise < abs(self.median / reference - 1)

    def __str__(self) -> str:
        return f"{self.median:.2f}x ({self.low:.2f}-{self.high:.2f}, noise {percent(self.noise)})"


def paired_ratio(a, b) -> Ratio:
    """The ratio of A's repeats to B's, pair by pair (A and B measured alternately, so load hits both alike)."""
    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_ratio needs as many A as B repeats, at least one; got {len(a)} and {len(b)}")
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return Ratio(statistics.median(ratios), min(ratios), max(ratios), max(cv(a), cv(b)))


def percent(noise: float) -> str:
    return "unknown (1 repeat)" if math.isnan(noise) else f"±{100 * noise:.1f}%"


def spread(xs, unit: str = "s", scale: float = 1.0) -> str:
    """'median 1.23 s (1.20-1.40, cv 4.1%)' of the repeats."""
    xs = [scale * x for x in xs]
    noise = cv(xs)
    tail = "" if math.isnan(noise) else f", cv {100 * noise:.1f}%"
    return f"median {statistics.median(xs):.3g} {unit} ({min(xs):.3g}-{max(xs):.3g}{tail})"


def verdict(r: Ratio, target: float, higher_is_better: bool = True, busy: bool = False) -> str:
    """'met' / 'not met' for the target, or why not: a busy machine, or noise as large as the distance between the
    measurement and the target (the whole noise band must lie on one side of it)."""
    if busy:
        return "no verdict: the machine is busy, the figures are too noisy (see the load line)"
    if r.within_noise(target):
        return (f"no verdict: too noisy (noise {percent(r.noise)} >= distance to the target "
                f"{100 * abs(r.median / target - 1):.1f}%)")
    return "met" if (r.median > target) == higher_is_better else "not met"


@dataclass(frozen=True)
class Load:
    """The 1-minute load average before and after a measurement, the cores, and the threads it used."""

    before: float
    after: float
    cpus: int
    threads: int

    @property
    def busy(self) -> bool:
        """Other work (the load besides our own threads) leaves fewer free cores than the threads we used."""
        others = max(self.before, self.after - self.threads)
        return others > self.cpus - self.threads + 0.5

    def __str__(self) -> str:
        state = "busy: figures too noisy to judge" if self.busy else "quiet enough"
        return (f"machine load {self.before:.2f} before, {self.after:.2f} after (1-min average), "
                f"{self.cpus} cores, {self.threads} threads used: {state}")


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 0.0


def load_since(before: float, threads: int | None = None) -> Load:
    """The Load of a measurement that started at load average `before` and ends now; `threads`: those it used
    (default: this process's torch threads)."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    return Load(before, loadavg(), os.cpu_count() or 1, threads)
