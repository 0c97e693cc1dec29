"""The phase boundary N50(r) of each variant, its fits and their intervals (a bootstrap over trials), and the
verdict on "sample complexity linear in r".

For each resample of whole trials the success rates are recomputed, N50(r) found again, and the line
N50 = a·r + b and the power law N50 ∝ r^p fitted through the N50 points; the intervals are percentiles over the
resamples. Linear in r = a > 0 and p compatible with 1 (the line's intercept allows p a little below 1 when b > 0,
so the AIC comparison of the two forms on the measured points is reported as well).
"""

import math

import torch

from ticketlab.paper.theory.fitting import crossing, fit_line, fit_loglog
from ticketlab.paper.theory.forms import _aic
from ticketlab.paper.theory.trialfit import bootstrap_trials
from ticketlab.paper.theory.variants import LABELS
from ticketlab.paper.theory.verdict import verdict

CLAIM = "sample complexity is linear in r"


def success_table(s, rows, variant) -> torch.Tensor:
    """(T, R, nN) success as 0/1, nan where the trial was non-finite."""
    table = torch.full((s.trials, len(s.rs), len(s.Ns)), float("nan"), dtype=torch.float64)
    ri, ni = {r: i for i, r in enumerate(s.rs)}, {n: i for i, n in enumerate(s.Ns)}
    for row in rows:
        if row["variant"] == variant and row["finite"]:
            table[row["trial"], ri[row["r"]], ni[row["N"]]] = float(row["success"])
    return table


def n50(s, table: torch.Tensor) -> list[float]:
    rates = table.nanmean(0)  # (R, nN)
    return [crossing(s.Ns, rates[i].tolist()) for i in range(len(s.rs))]


def _line_slope(s, values) -> float:
    fit = fit_line(s.rs, values)
    return fit.slope if fit and fit.n >= 3 else float("nan")


def _power(s, values) -> float:
    fit = fit_loglog(s.rs, values)
    return fit.slope if fit and fit.n >= 3 else float("nan")


def boundary_fits(s, rows, seed: int):
    fits, boundary = {}, []
    for v in s.variants:
        table = success_table(s, rows, v)
        values = n50(s, table)
        first = table.nanmean(0)[:, 0]
        boundary += [{"variant": v, "r": r, "N50": n, "status": "crossed" if math.isfinite(n) else
                      f"below {s.Ns[0]}" if float(first[i]) >= 0.5 else f"never up to {s.Ns[-1]}"}
                     for i, (r, n) in enumerate(zip(s.rs, values, strict=True))]
        slope, slope_ci, _ = bootstrap_trials(lambda idx, t=table: _line_slope(s, n50(s, t[idx])), s.trials,
                                              seed=seed)
        power, power_ci, ok = bootstrap_trials(lambda idx, t=table: _power(s, n50(s, t[idx])), s.trials,
                                               seed=seed)
        line = fit_line(s.rs, values)
        pts = [(r, n) for r, n in zip(s.rs, values, strict=True) if math.isfinite(n)]
        aic = _aic(*(torch.tensor(c, dtype=torch.float64) for c in zip(*pts, strict=True))) if len(pts) >= 3 else {}
        fits[v] = {"label": LABELS[v], "crossings": len(pts), "slope": slope, "slope_ci": slope_ci,
                   "intercept": line.intercept if line and line.n >= 3 else float("nan"), "power": power,
                   "power_ci": power_ci, "resamples_with_fit": ok, "aic": aic,
                   "interval": "bootstrap over trials (teachers), 400 resamples"}
    return fits, boundary


def boundary_verdicts(s, fits, boundary):
    verdicts, lines = [], []
    for v, f in fits.items():
        shown = ", ".join(b["status"] if not math.isfinite(b["N50"]) else f"{b['N50']:.0f}"
                          for b in boundary if b["variant"] == v)
        lines.append(f"{v} ({f['label']}): N50 at r = {', '.join(map(str, s.rs))}: {shown}")
        if f["crossings"] < 3 or not math.isfinite(f["slope_ci"][0]):
            word = "inconclusive"
            text = (f"{f['crossings']} of {len(s.rs)} widths cross 50% success within N ≤ {max(s.Ns)}: "
                    f"no boundary to fit ({shown})")
        else:
            lo, hi = f["slope_ci"]
            plo, phi = f["power_ci"]
            linear = plo <= 1 <= phi or f["aic"].get("line", math.inf) < f["aic"].get("power law", math.inf)
            word = "agrees" if lo > 0 and linear else "partly" if lo > 0 else "disagrees"
            text = (f"N50 = {f['slope']:.2f}·r {f['intercept']:+.0f} (slope CI [{lo:.2f}, {hi:.2f}], "
                    f"{f['slope'] / s.K:.2f} samples per unknown); N50 ∝ r^{f['power']:.2f} "
                    f"(CI [{plo:.2f}, {phi:.2f}]); bootstrap over teachers")
        lines.append(f"  {word}: {text}")
        verdicts.append(verdict(CLAIM, word, text, "phase.png", v))
    return verdicts, lines
