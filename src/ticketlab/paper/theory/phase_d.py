"""Experiment `phase-d`: does the sample complexity at fixed r grow with the input dimension d? The claim says it is
linear in r "not in d", so N50 at fixed r should not depend on d.

Protocol: the `phase` protocol (phase.py) at several d, the same r and N grids, with a fresh teacher per d.
Per (variant, r) the exponent of N50 ∝ d^q is fitted through the d values, with a bootstrap over trials
(teachers). Independent of d = the interval contains 0.
"""

import math
from dataclasses import dataclass, replace

from ticketlab.paper.theory.checks import memory, teacher_shapes
from ticketlab.paper.theory.fitting import loglog_slope
from ticketlab.paper.theory.phase import PhaseSettings, check, run_row
from ticketlab.paper.theory.phase_fit import n50, success_table
from ticketlab.paper.theory.plots import figure
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.teacher import make_teacher, sample_bytes
from ticketlab.paper.theory.trialfit import bootstrap_trials
from ticketlab.paper.theory.variants import LABELS
from ticketlab.paper.theory.verdict import no_effect_word, verdict

CLAIM = "sample complexity at fixed r does not depend on d"
MARGIN = 0.15


@dataclass(frozen=True)
class PhaseDSettings(PhaseSettings):
    ds: tuple[int, ...] = (50, 100, 200)
    rs: tuple[int, ...] = (10, 25)
    Ns: tuple[int, ...] = (50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600, 2400, 3200)
    variants: tuple[str, ...] = ("oracle", "found")


@experiment("phase-d", CLAIM + " (phase boundary at several d)", PhaseDSettings,
            quick={"ds": (20, 40), "r_star": 5, "rs": (5, 10), "Ns": (40, 80, 160, 320, 640), "trials": 4,
                   "max_iters": 300, "dense_iters": 300})
def run(s: PhaseDSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    for d in s.ds:
        check(replace(s, d=d))
    memory("phase-d grid row", sample_bytes(s.trials, max(s.Ns), max(s.ds), s.K * len(s.rs) * len(s.variants)),
           max_bytes)
    rows, tables = [], {}
    for d in s.ds:
        sd = replace(s, d=d)
        teacher_shapes(d, s.K, s.r_star, rs=s.rs)
        teacher = make_teacher(s.trials, d, s.K, s.r_star, stream(seed, "teacher", d))
        cells = []
        for N in s.Ns:
            cells += [{"d": d, **row} for row in run_row(sd, teacher, N, seed)]
        rows += cells
        for v in s.variants:
            tables[(v, d)] = success_table(sd, cells, v)
        progress(f"  d={d}: N50 " + "; ".join(f"{v} " + " ".join(f"{n:.0f}" for n in n50(sd, tables[(v, d)]))
                                             for v in s.variants))
    out.csv("trials.csv", rows)
    boundary, fits, verdicts, lines = [], {}, [], []
    for v in s.variants:
        for i, r in enumerate(s.rs):
            values = [n50(s, tables[(v, d)])[i] for d in s.ds]
            boundary += [{"variant": v, "r": r, "d": d, "N50": n} for d, n in zip(s.ds, values, strict=True)]

            q, ci, ok = bootstrap_trials(lambda idx, v=v, i=i: _exponent(s, tables, v, i, idx), s.trials, seed=seed)
            fits[f"{v}, r={r}"] = {"exponent_of_d": q, "ci": ci, "resamples_with_fit": ok, "N50": values}
            shown = ", ".join("none" if not math.isfinite(n) else f"{n:.0f}" for n in values)
            if not math.isfinite(ci[0]):
                word, text = "inconclusive", f"r={r}: N50 at d = {list(s.ds)}: {shown}; too few crossings to fit"
            else:
                word = no_effect_word(ci, MARGIN)
                text = (f"r={r}: N50 at d = {list(s.ds)}: {shown}; N50 ∝ d^{q:.2f}, CI [{ci[0]:.2f}, {ci[1]:.2f}] "
                        f"(bootstrap over teachers; 'no dependence' = CI within ±{MARGIN})")
            lines.append(f"{v} ({LABELS[v]}): {word}: {text}")
            verdicts.append(verdict(CLAIM, word, text, "phase_d.png", v))
    out.csv("boundary.csv", boundary)
    draw(s, boundary, out)
    return {"fits": fits, "lines": lines, "verdicts": verdicts, "boundary": boundary,
            "nonfinite_trials": sum(1 for row in rows if not row["finite"])}


def _exponent(s, tables, v, i, idx) -> float:
    """Least-squares slope of log N50 on log d over the d values where N50 crossed (nan with fewer than 2)."""
    return loglog_slope(list(s.ds), [n50(s, tables[(v, d)][idx])[i] for d in s.ds])


def draw(s, boundary, out) -> None:
    fig, ax = figure(width=4.8, height=3.6)
    for v, marker in zip(s.variants, "os^v", strict=False):
        for r in s.rs:
            pts = [(b["d"], b["N50"]) for b in boundary if b["variant"] == v and b["r"] == r
                   and math.isfinite(b["N50"])]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=marker, label=f"{v}, r={r}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("d (input dimension)")
    ax.set_ylabel("N50 (50% success)")
    ax.set_title(f"K={s.K}, r*={s.r_star}, {s.trials} trials per cell", fontsize=8)
    ax.legend(fontsize=7)
    out.png("phase_d.png", fig)
