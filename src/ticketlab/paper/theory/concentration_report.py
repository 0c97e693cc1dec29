"""Fits, verdicts and figure of `concentration` (see concentration.py)."""

import torch

from ticketlab.paper.theory.fitting import finite_stats, fit_loglog
from ticketlab.paper.theory.forms import compare_forms
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.verdict import no_effect_word, verdict

MARGIN = 0.15  # |exponent of d| below which "does not depend on d" is accepted

QUANTITIES = {"grad_deviation": "sup ||∇f_N - ∇f||", "value_deviation": "sup |f_N - f|"}


def _main(s):
    d = s.ds[len(s.ds) // 2]
    rs = [r for r in s.rs if r <= d]
    return d, s.Ns[len(s.Ns) // 2], rs[min(1, len(rs) - 1)], rs


def summarise(s, rows):
    d, N, r, rs = _main(s)
    fits, lines, verdicts = {}, [], []
    for key, label in QUANTITIES.items():
        sweeps = (("r", [row for row in rows if row["d"] == d and row["N"] == N], 0.5, f"d={d}, N={N}"),
                  ("N", [row for row in rows if row["d"] == d and row["r"] == r], -0.5, f"d={d}, r={r}"))
        for sweep, pts, claim, where in sweeps:
            forms = compare_forms([p[sweep] for p in pts], [p[key] for p in pts], [p["trial"] for p in pts])
            fits[f"{label} vs {sweep} ({where})"] = forms.to_dict() if forms else None
            word, text = forms.verdict(claim) if forms else ("inconclusive", "too few points")
            claim_text = f"{label} ∝ {'sqrt(r)' if sweep == 'r' else '1/sqrt(N)'} (pruned objective closer to E f)"
            lines.append(f"{label} vs {sweep} at {where}: {word}: {text}")
            verdicts.append(verdict(claim_text, word, f"{where}: {text}", "concentration.png"))
        at = [row for row in rows if row["r"] == rs[0] and row["N"] == N]
        fit = fit_loglog([p["d"] for p in at], [p[key] for p in at])
        fits[f"{label} vs d (r={rs[0]}, N={N})"] = fit.to_dict() if fit else None
        if fit:
            lo, hi = fit.slope_ci
            word = no_effect_word(fit.slope_ci, MARGIN)
            text = (f"r={rs[0]}, N={N}: {label} ∝ d^{fit.slope:.3f}, 95% CI [{lo:.3f}, {hi:.3f}] over d = "
                    f"{list(s.ds)} (independent teachers per d; 'no dependence' = CI within ±{MARGIN})")
            lines.append(f"{label} vs d: {word}: {text}")
            verdicts.append(verdict(f"{label} does not depend on d", word, text, "concentration.png"))
    return fits, lines, verdicts


def draw(s, rows, out) -> None:
    d_main, N, r, _ = _main(s)
    fig, axes = figure(ncols=3, width=3.5, height=3.4)
    for d in s.ds:
        rs = [x for x in s.rs if x <= d]
        for ax, key, sweep, xs, fixed in ((axes[0], "grad_deviation", "r", rs, ("N", N)),
                                          (axes[1], "grad_deviation", "N", list(s.Ns), ("r", r)),
                                          (axes[2], "value_deviation", "r", rs, ("N", N))):
            stats = [finite_stats(torch.tensor([row[key] for row in rows if row["d"] == d and row[sweep] == x
                                                and row[fixed[0]] == fixed[1]])) for x in xs]
            spread(ax, xs, stats, f"d={d}")
    for ax, sweep, ylabel, slope in ((axes[0], "r", "sup over sphere ||∇f_N - ∇f||", 0.5),
                                     (axes[1], "N", "sup over sphere ||∇f_N - ∇f||", -0.5),
                                     (axes[2], "r", "sup over sphere |f_N - f|", 0.5)):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(sweep)
        ax.set_ylabel(ylabel)
        lo, hi = ax.get_xlim()
        y0 = ax.get_ylim()[0] * 2
        ax.plot([lo, hi], [y0, y0 * (hi / lo) ** slope], "k:", lw=1, label=f"slope {slope:+g} (claim)")
        ax.legend(fontsize=6)
    axes[0].set_title(f"N={N}", fontsize=8)
    axes[1].set_title(f"r={r}", fontsize=8)
    axes[2].set_title(f"N={N}; rho={s.rho}, {s.points} points, {s.trials} trials", fontsize=8)
    out.png("concentration.png", fig)
