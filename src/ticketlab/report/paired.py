"""Paired comparisons over seeds: one network against another trained from the same seed (a ticket against its own
dense network), as the mean difference with a 95% t-interval. Pairing removes the seed-to-seed spread that two
independent means carry, so it is the honest test of "tickets beat dense"."""

import math
import statistics
from dataclasses import dataclass

from ticketlab.report.runs import Run

# Student's t, 97.5% quantile, by degrees of freedom (scipy.stats.t.ppf(0.975, df)); written out so the report needs
# no scipy. Beyond 30 the normal 1.96 is within 2%.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (the nearest tabulated df at or below it)."""
    return T975[max(k for k in T975 if k <= df)] if df <= 30 else 1.96


@dataclass(frozen=True)
class Paired:
    """Mean of per-seed differences a - b and its 95% confidence interval (t with n - 1 degrees of freedom)."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, differences: list[float]) -> "Paired | None":
        """None for fewer than two pairs: one pair has no interval."""
        if len(differences) < 2:
            return None
        mean = statistics.fmean(differences)
        half = t975(len(differences) - 1) * statistics.stdev(differences) / math.sqrt(len(differences))
        return cls(mean, mean - half, mean + half, len(differences))

    @property
    def verdict(self) -> str:
        """What the interval supports: a higher, a lower, or no difference resolved."""
        if self.low > 0:
            return "higher"
        return "lower" if self.high < 0 else "no difference resolved"

    def format(self, scale: float = 100.0, unit: str = " pp") -> str:
        return (f"{self.mean * scale:+.2f}{unit} (95% CI {self.low * scale:+.2f} to {self.high * scale:+.2f}, "
                f"{self.n} seeds)")


def paired_difference(runs: list[Run], a: tuple[str, int], b: tuple[str, int],
                      key: str = "early_stop_test_acc") -> Paired | None:
    """`key` of stage a (kind, level) minus that of stage b, run by run (each run one seed); runs where either stage
    is unfinished are left out."""
    differences = []
    for run in runs:
        sa, sb = run.stage(*a), run.stage(*b)
        if sa is not None and sb is not None and sa.done and sb.done:
            va, vb = sa.summary.get(key), sb.summary.get(key)
            if va is not None and vb is not None:
                differences.append(float(va) - float(vb))
    return Paired.of(differences)
