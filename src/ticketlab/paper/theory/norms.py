"""Experiment `norms` (the talk's Figure 4): per-neuron weight norm vs angle to the class-relevant pattern after
training, and the histogram of norms split into good / bad neurons, for the two-layer network and the GNN.

Good neuron = responds to its class-relevant pattern p_{a_k} (<w_k, p_{a_k}> > 0). Claim: good neurons end with
large norms and small angles, bad ones with small norms. The separation is summarised by the AUC (probability that
a random good neuron of a trial has a larger norm than a random bad one; 1 = magnitude ranks them perfectly).
"""

from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import memory, positive
from ticketlab.paper.theory.features import FeatureSettings, feature_bytes, make_patterns, sample_task
from ticketlab.paper.theory.fitting import finite_stats
from ticketlab.paper.theory.patchnet import error_rate, goodness, init_weights, train_patchnet
from ticketlab.paper.theory.plots import figure
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.verdict import verdict

MODELS = ("mlp", "gnn")
CLAIM = "good neurons end with large norms, bad ones small (Figure 4)"


@dataclass(frozen=True)
class NormSettings(FeatureSettings):
    N: int = 400
    N_test: int = 2000


def auc(norms: torch.Tensor, good: torch.Tensor) -> torch.Tensor:
    """Per trial P(norm of a good neuron > norm of a bad one) (ties count 1/2); nan without both kinds."""
    greater = (norms.unsqueeze(2) > norms.unsqueeze(1)).double() + 0.5 * (norms.unsqueeze(2) == norms.unsqueeze(1))
    pairs = (good.unsqueeze(2) & ~good.unsqueeze(1)).double()
    return (greater * pairs).sum((1, 2)) / pairs.sum((1, 2))


def train_model(s, model: str, N: int, seed: int, *keys):
    """Patterns, data, initial and trained weights for one model at N samples: everything a feature experiment
    measures. Separate streams for patterns, data, initialisation."""
    patterns = make_patterns(s.trials, s.task(), stream(seed, "patterns", *keys))
    X, y = sample_task(model, patterns, N, s.task(), stream(seed, "data", model, N, *keys))
    W0 = init_weights(s.trials, s.K, s.d, s.init_scale, stream(seed, "init", *keys))
    alive = torch.ones(s.trials, s.K)
    return patterns, X, y, W0, alive


@experiment("norms", "good neurons (aligned with class-relevant patterns) end with large norms, bad ones small "
            "(Figure 4)", NormSettings, quick={"trials": 3, "N": 100, "N_test": 200, "max_iters": 400})
def run(s: NormSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    s.check_all()
    positive("N_test", s.N_test)
    memory("norms", feature_bytes(s.trials, s.N + s.N_test, s.P, s.d, s.K), max_bytes)
    rows, lines, summary, nonfinite = [], [], {}, 0
    for model in MODELS:
        patterns, X, y, W0, alive = train_model(s, model, s.N, seed)
        res = train_patchnet(W0, X, y, alive, s.lr, s.max_iters)
        nonfinite += int((~res.finite).sum())
        X_test, y_test = sample_task(model, patterns, s.N_test, s.task(), stream(seed, "test", model))
        test_error = error_rate(res.weights, X_test, y_test, alive)
        angle, good = goodness(res.weights, patterns)
        _, good0 = goodness(W0, patterns)
        norms = res.weights.norm(dim=-1)
        separation = auc(norms, good)
        for t in range(s.trials):
            for k in range(s.K):
                rows.append({"model": model, "trial": t, "neuron": k, "finite": bool(res.finite[t]),
                             "norm": float(norms[t, k]), "angle_deg": float(angle[t, k]), "good": bool(good[t, k]),
                             "good_at_init": bool(good0[t, k])})
        ok = res.finite
        g, b = norms[ok][good[ok]], norms[ok][~good[ok]]
        stats = {"good_norm": finite_stats(g), "bad_norm": finite_stats(b), "auc": finite_stats(separation, ok),
                 "test_error": finite_stats(test_error, ok),
                 "converged": int(torch.isfinite(res.converged_at).sum()),
                 "good_fraction": float(good[ok].double().mean()) if bool(ok.any()) else None,
                 "good_at_init_still_good": float((good & good0)[ok].sum() / good0[ok].sum().clamp_min(1))}
        summary[model] = stats
        lines.append(f"{model}: good norm median {_fmt(stats['good_norm'])}, bad norm median {_fmt(stats['bad_norm'])}"
                     f", AUC median {_fmt(stats['auc'])}, good fraction {stats['good_fraction']:.2f}, test error "
                     f"median {_fmt(stats['test_error'])}, converged {stats['converged']}/{s.trials}")
        progress("  " + lines[-1])
    out.csv("neurons.csv", rows)
    draw(s, rows, out)
    verdicts = []
    for model, st in summary.items():
        auc_median, q25 = st["auc"]["median"], st["auc"]["q25"]
        word = "inconclusive" if auc_median is None else "agrees" if q25 >= 0.95 else \
            "partly" if auc_median > 0.5 else "disagrees"
        verdicts.append(verdict(CLAIM, word, f"{model}: good-neuron norm median {_fmt(st['good_norm'])} vs bad "
                                f"{_fmt(st['bad_norm'])}; per-trial AUC (good > bad) median {_fmt(st['auc'])}, "
                                f"lower quartile {q25 if q25 is None else round(q25, 3)}",
                                "norms.png", "two-layer net" if model == "mlp" else "two-layer GNN"))
    return {"fits": {}, "lines": lines, "verdicts": verdicts, "nonfinite_trials": nonfinite, "summary": summary}


def _fmt(stat) -> str:
    return "n/a" if stat["median"] is None else f"{stat['median']:.3g}"


def draw(s, rows, out) -> None:
    fig, axes = figure(ncols=2, nrows=2, width=3.9, height=3.0)
    for col, model in enumerate(MODELS):
        pts = [row for row in rows if row["model"] == model and row["finite"]]
        scatter, hist = axes[col], axes[2 + col]
        top = max((p["norm"] for p in pts), default=1.0)
        bins = [top * i / 50 for i in range(51)]  # shared bins, so good and bad bars are comparable
        for good, color, label in ((True, "#1f77b4", "good"), (False, "#d62728", "bad")):
            sel = [p for p in pts if p["good"] == good]
            scatter.scatter([p["angle_deg"] for p in sel], [p["norm"] for p in sel], s=5, alpha=0.5, color=color,
                            label=f"{label} ({len(sel)})")
            hist.hist([p["norm"] for p in sel], bins=bins, alpha=0.6, color=color, label=label)
        scatter.set_xlabel("angle to class-relevant pattern (deg)")
        scatter.set_ylabel("neuron norm ||w_k||")
        scatter.set_title(f"{'two-layer net' if model == 'mlp' else 'two-layer GNN'}: N={s.N}, {s.trials} trials")
        scatter.legend()
        hist.set_xlabel("neuron norm ||w_k||")
        hist.set_ylabel("neurons")
        hist.set_yscale("log")
        hist.legend()
    out.png("norms.png", fig)
