"""The statistics every benchmark prints, in one place: medians, ranges and a noise figure of repeated, interleaved
timings, the machine load seen, and a verdict only when the noise is smaller than the effect.

Noise is the larger coefficient of variation (stdev / mean) of the two sides' repeats: how much one measurement of
the same thing moves from repeat to repeat. A ratio is only told apart from 1 (or a target from the measurement)
when that relative distance exceeds the noise; otherwise the benchmark says the figures are too noisy."""

import math
import os
import statistics
import time
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
    """The machine's load around a measurement: the 1-minute load average before and after, the cores, the threads it
    used and, where /proc/stat exists, the cores that other work (`others`) and the measurement itself (`used`) kept
    busy on average meanwhile."""

    before: float
    after: float
    cpus: int
    threads: int
    others: float | None = None
    used: float | None = None

    @property
    def busy(self) -> bool:
        """Other work took cores our threads needed: more than the cores we left free, or more than half a core of a
        machine that was full (then it wanted more than it got). Without CPU times, from the load averages, which
        lag (a benchmark run just before counts as other work)."""
        if self.others is None or self.used is None:
            others = max(self.before, self.after - self.threads)
            return others > self.cpus - self.threads + 0.5
        full = self.others + self.used > self.cpus - 0.25
        return self.others > self.cpus - self.threads + 0.5 or (full and self.others > 0.5)

    def __str__(self) -> str:
        state = "busy: figures too noisy to judge" if self.busy else "quiet enough"
        during = "" if self.others is None else f", other work used {self.others:.2f} cores meanwhile"
        return (f"machine load {self.before:.2f} before, {self.after:.2f} after (1-min average){during}, "
                f"{self.cpus} cores, {self.threads} threads used: {state}")


@dataclass(frozen=True)
class LoadMark:
    """Where a measurement starts: the load average, the machine's busy CPU seconds (None without /proc/stat), this
    process's CPU seconds (its finished children's included) and the time."""

    average: float
    machine: float | None
    own: float
    time: float


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 0.0


def machine_cpu_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def load_mark() -> LoadMark:
    """Mark the start of a measurement (for `load_since`)."""
    return LoadMark(loadavg(), machine_cpu_seconds(), own_cpu_seconds(), time.monotonic())


def load_since(mark: LoadMark, threads: int | None = None) -> Load:
    """The Load of a measurement that started at `mark` and ends now; `threads`: those it used (default: this
    process's torch threads). Other work's cores: the machine's busy CPU time less ours, over the elapsed time."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    machine, elapsed = machine_cpu_seconds(), time.monotonic() - mark.time
    others = used = None
    if machine is not None and mark.machine is not None and elapsed > 0:
        own = own_cpu_seconds() - mark.own
        others, used = max(0.0, machine - mark.machine - own) / elapsed, own / elapsed
    return Load(mark.average, loadavg(), os.cpu_count() or 1, threads, others, used)
