"""Experiment `neuron-samples` (Part 2): does the network pruned by neuron magnitude need fewer samples?

For each N: train the dense network on N samples, prune a fraction of the neurons by norm, rewind the survivors to
their initial weights, retrain on the same N samples; test error on fresh samples. Main line: the talk's global
magnitude pruning; `per-sign magnitude (variant)` is ours (neuron_pruning.py), labelled as such. N_ok(rate) = the
N at which half the trials reach test error <= `target` (interpolated); the pruned network needs fewer samples
when N_ok(rate) < N_ok(0), with a bootstrap over trials for the ratio. A curve already above 1/2 at the smallest
N counts as N_ok = N[0]/2 (below the grid: the ratio is then only a bound).
"""

import math
from dataclasses import dataclass

import torch

from ticketlab.core.pruning import check_rate, round_half_up
from ticketlab.paper.theory.checks import memory, positive
from ticketlab.paper.theory.features import FeatureSettings, feature_bytes, sample_task
from ticketlab.paper.theory.fitting import crossing, finite_stats
from ticketlab.paper.theory.neuron_pruning import keep_top_neurons, keep_top_per_sign
from ticketlab.paper.theory.norms import train_model
from ticketlab.paper.theory.patchnet import error_rate, train_patchnet
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.trialfit import bootstrap_trials
from ticketlab.paper.theory.verdict import interval_word, verdict

METHODS = ("global magnitude", "per-sign magnitude (variant)")
CLAIM = "after magnitude neuron pruning the network needs fewer samples"


@dataclass(frozen=True)
class NeuronSamplesSettings(FeatureSettings):
    Ns: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 16, 32)
    N_test: int = 2000
    rates: tuple[float, ...] = (0.0, 0.5, 0.8)
    target: float = 0.01  # test error that counts as "learned"
    model: str = "mlp"


@experiment("neuron-samples", CLAIM + " (Part 2)", NeuronSamplesSettings,
            quick={"trials": 4, "Ns": (2, 8, 32), "N_test": 300, "max_iters": 300, "rates": (0.0, 0.5)})
def run(s: NeuronSamplesSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    s.check_all()
    for N in s.Ns:
        positive("N (training samples)", N)
    for rate in s.rates:
        check_rate(rate, "neuron pruning rate")
    memory("neuron-samples", feature_bytes(s.trials, max(s.Ns) + s.N_test, s.P, s.d, s.K), max_bytes)
    rows = []
    for N in s.Ns:
        patterns, X, y, W0, alive = train_model(s, s.model, N, seed, N)
        X_test, y_test = sample_task(s.model, patterns, s.N_test, s.task(), stream(seed, "test", s.model, N))
        norms = train_patchnet(W0, X, y, alive, s.lr, s.max_iters).weights.norm(dim=-1)
        for rate in s.rates:
            masks = {"global magnitude": keep_top_neurons(norms, s.K - round_half_up(rate * s.K)),
                     "per-sign magnitude (variant)": keep_top_per_sign(norms, rate)}
            for method in (METHODS if rate > 0 else METHODS[:1]):
                res = train_patchnet(W0, X, y, masks[method], s.lr, s.max_iters)
                test = error_rate(res.weights, X_test, y_test, masks[method])
                rows += [{"N": N, "rate": rate, "method": method if rate > 0 else "dense", "trial": t,
                          "finite": bool(res.finite[t]), "test_error": float(test[t])} for t in range(s.trials)]
        progress(f"  N={N}: mean test error " + ", ".join(f"{m} {r:g}: {_mean(rows, N, r, m):.3f}"
                                                          for r in s.rates for m in _methods(r)))
    out.csv("trials.csv", rows)
    verdicts, lines, fits = _verdicts(s, rows, seed)
    draw(s, rows, out)
    return {"fits": fits, "lines": lines, "verdicts": verdicts,
            "nonfinite_trials": sum(1 for row in rows if not row["finite"])}


def _methods(rate):
    return METHODS if rate > 0 else ("dense",)


def _mean(rows, N, rate, method) -> float:
    v = [r["test_error"] for r in rows if r["N"] == N and r["rate"] == rate and r["method"] == method and r["finite"]]
    return sum(v) / len(v) if v else float("nan")


def _table(s, rows, rate, method) -> torch.Tensor:
    t = torch.zeros(s.trials, len(s.Ns), dtype=torch.float64)
    for r in rows:
        if r["rate"] == rate and r["method"] == method:
            t[r["trial"], s.Ns.index(r["N"])] = float(r["finite"] and r["test_error"] <= s.target)
    return t


def _n_ok(s, table) -> float:
    return crossing(s.Ns, table.mean(0).tolist()) if float(table.mean(0)[0]) < 0.5 else float(s.Ns[0]) / 2


def _verdicts(s, rows, seed):
    dense = _table(s, rows, 0.0, "dense")
    fits, lines, verdicts = {}, [], []
    for method in METHODS:
        for rate in (x for x in s.rates if x > 0):
            table = _table(s, rows, rate, method)

            def log_ratio(idx, table=table):
                a, b = _n_ok(s, table[idx]), _n_ok(s, dense[idx])
                return math.log(a / b) if math.isfinite(a) and math.isfinite(b) else float("inf")

            value, ci, ok = bootstrap_trials(log_ratio, s.trials, seed=seed)
            n_p, n_d = _n_ok(s, table), _n_ok(s, dense)
            if not math.isfinite(n_p):
                word, text = "disagrees", (f"rate {rate:g}: the pruned network never reaches test error ≤ "
                                           f"{s.target} in half the trials (N ≤ {max(s.Ns)}); dense at N = {n_d:.3g}")
            else:
                word = interval_word(ci, -1)
                text = (f"rate {rate:g}: N_ok {n_p:.3g} pruned vs {n_d:.3g} dense; ratio {math.exp(value):.3g}, "
                        f"95% CI [{math.exp(ci[0]):.3g}, {math.exp(ci[1]):.3g}] (bootstrap over trials)")
            fits[f"{method}, rate {rate:g}"] = {"N_ok": n_p, "N_ok_dense": n_d, "log_ratio": value, "ci": ci}
            lines.append(f"{method}: {word}: {text}")
            verdicts.append(verdict(CLAIM, word, text, "neuron_samples.png", method))
    return verdicts, lines, fits


def draw(s, rows, out) -> None:
    fig, ax = figure(width=5.0, height=3.6)
    for rate in s.rates:
        for method in _methods(rate):
            stats = [finite_stats(torch.tensor([r["test_error"] for r in rows if r["N"] == N and r["rate"] == rate
                                                and r["method"] == method and r["finite"]])) for N in s.Ns]
            spread(ax, list(s.Ns), stats, f"{method}" + (f", rate {rate:g}" if rate > 0 else ""))
    ax.axhline(s.target, color="gray", ls=":", label=f"target {s.target}")
    ax.set_xscale("log")
    ax.set_xlabel("N (training samples)")
    ax.set_ylabel("test error (median, IQR)")
    ax.set_title(f"{s.model}: K={s.K}, σ={s.sigma}, {s.trials} trials; rewound", fontsize=8)
    ax.legend(fontsize=6)
    out.png("neuron_samples.png", fig)
