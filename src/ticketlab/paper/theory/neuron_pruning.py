"""Experiment `neuron-pruning` (the talk's Figure 5 for a shallow network): train the dense network, remove the
lowest-norm neurons, rewind the survivors to their initial weights, retrain.
Measured vs the neuron pruning rate: iterations until every training margin is >= 1, and test error.
Claim: pruning the lowest-magnitude neurons cuts the iterations without hurting test accuracy.

Methods: `global magnitude` (the talk's method, one threshold over all neurons: the main line), `random` (the
control), and `per-sign magnitude` (each output-sign group loses the same fraction): a VARIANT we added after
seeing global magnitude fail at high rates; it is reported beside the main line, never in its place.
"""

from dataclasses import dataclass

import torch

from ticketlab.core.pruning import check_rate, round_half_up
from ticketlab.paper.theory.checks import memory, positive
from ticketlab.paper.theory.features import FeatureSettings, feature_bytes, sample_task
from ticketlab.paper.theory.fitting import finite_stats
from ticketlab.paper.theory.norms import train_model
from ticketlab.paper.theory.patchnet import error_rate, train_patchnet
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.verdict import verdict

METHODS = ("global magnitude", "random", "per-sign magnitude (variant)")
CLAIM = "pruning the lowest-magnitude neurons cuts iterations without hurting test accuracy (Figure 5)"


@dataclass(frozen=True)
class NeuronPruningSettings(FeatureSettings):
    N: int = 400
    N_test: int = 2000
    model: str = "mlp"
    rates: tuple[float, ...] = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
    trials: int = 16


def keep_top_neurons(norms: torch.Tensor, keep: int) -> torch.Tensor:
    """(T, K) float mask of the `keep` largest-norm neurons per trial (ties to the lower index)."""
    rank = norms.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    return (rank < keep).to(norms.dtype)


def keep_top_per_sign(norms: torch.Tensor, rate: float) -> torch.Tensor:
    """The same, within each output-sign group (a_k = +1 and a_k = -1 each lose round_half_up(rate · size)), so
    neither class loses all its neurons when one group has larger norms."""
    half = (norms.shape[1] + 1) // 2
    groups = (norms[:, :half], norms[:, half:])
    return torch.cat([keep_top_neurons(g, g.shape[1] - round_half_up(rate * g.shape[1])) for g in groups], dim=1)


@experiment("neuron-pruning", "magnitude neuron pruning + rewinding cuts iterations without hurting accuracy "
            "(Figure 5)", NeuronPruningSettings, quick={"trials": 3, "N": 100, "N_test": 200, "max_iters": 400,
                                                        "rates": (0.0, 0.5, 0.8)})
def run(s: NeuronPruningSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    s.check_all()
    positive("N (training samples)", s.N)
    positive("N_test", s.N_test)
    for rate in s.rates:
        check_rate(rate, "neuron pruning rate")
    memory("neuron-pruning", feature_bytes(s.trials, s.N + s.N_test, s.P, s.d, s.K), max_bytes)
    patterns, X, y, W0, alive = train_model(s, s.model, s.N, seed)
    X_test, y_test = sample_task(s.model, patterns, s.N_test, s.task(), stream(seed, "test", s.model))
    dense = train_patchnet(W0, X, y, alive, s.lr, s.max_iters)
    norms = dense.weights.norm(dim=-1)
    rows, nonfinite = [], 0
    for rate in s.rates:
        keep = s.K - round_half_up(rate * s.K)
        g = stream(seed, "random-prune", rate)
        masks = {"global magnitude": keep_top_neurons(norms, keep),
                 "random": keep_top_neurons(torch.rand(norms.shape, generator=g), keep),
                 "per-sign magnitude (variant)": keep_top_per_sign(norms, rate)}
        for method, kept in masks.items():
            res = train_patchnet(W0, X, y, kept, s.lr, s.max_iters)  # rewind: restart from the initial weights
            nonfinite += int((~res.finite).sum())
            test = error_rate(res.weights, X_test, y_test, kept)
            rows += [{"rate": rate, "kept_neurons": int(kept[0].sum()), "method": method, "trial": t,
                      "finite": bool(res.finite[t]), "iterations": float(res.converged_at[t]),
                      "test_error": float(test[t])}
                     for t in range(s.trials)]
        progress(f"  rate {rate}: median iterations global magnitude "
                 f"{_median(rows, rate, 'global magnitude', 'iterations')}, "
                 f"random {_median(rows, rate, 'random', 'iterations')}")
    out.csv("trials.csv", rows)
    lines = []
    for method in METHODS:
        never = sum(1 for r in rows if r["method"] == method and r["finite"] and r["iterations"] != r["iterations"])
        lines.append(f"{method}: median iterations " + ", ".join(
            f"{rate:g}→{_median(rows, rate, method, 'iterations')}" for rate in s.rates) + "; median test error " +
            ", ".join(f"{rate:g}→{_median(rows, rate, method, 'test_error')}" for rate in s.rates) +
            f"; {never} runs never converged within {s.max_iters}")
    verdicts = [neuron_verdict(s, rows, method) for method in METHODS]
    lines += [f"{v['variant']}: {v['verdict']}: {v['evidence']}" for v in verdicts]
    draw(s, rows, out)
    return {"fits": {}, "lines": lines, "verdicts": verdicts, "nonfinite_trials": nonfinite}


def neuron_verdict(s, rows, method) -> dict:
    """Up to which rate the method keeps every trial's test error within 0.01 of the dense network's and cuts the
    median iterations (never-converged runs count as slower than any converged one)."""
    def trial_values(rate, key):
        return {r["trial"]: r[key] for r in rows if r["rate"] == rate and r["method"] == method and r["finite"]}

    dense_err, dense_it = trial_values(0.0, "test_error"), _median_inf(rows, 0.0, method)
    good, first_bad = [], None
    for rate in sorted(x for x in s.rates if x > 0):
        err = trial_values(rate, "test_error")
        worse = sum(1 for t, e in err.items() if e > dense_err.get(t, 0.0) + 0.01)
        faster = _median_inf(rows, rate, method) < dense_it
        if worse == 0 and faster and first_bad is None:
            good.append(rate)
        elif first_bad is None:
            first_bad = (rate, worse, len(err), _median_inf(rows, rate, method))
    top = max(s.rates)
    if good and good[-1] == top:
        word, text = "agrees", f"iterations fall and no trial loses accuracy at every rate up to {top:g}"
    elif good:
        rate, worse, n, it = first_bad
        word, text = "partly", (f"holds up to rate {good[-1]:g}; at {rate:g}, {worse}/{n} trials lose > 0.01 "
                                f"accuracy or the median iterations ({it:.0f}) are not below dense ({dense_it:.0f})")
    else:
        word, text = "disagrees", "no pruning rate both cuts the median iterations and keeps accuracy"
    return verdict(CLAIM, word, text, "neuron_pruning.png", method)


def _median_inf(rows, rate, method) -> float:
    vals = torch.tensor([r["iterations"] for r in rows if r["rate"] == rate and r["method"] == method
                         and r["finite"]], dtype=torch.float64)
    return float(torch.nan_to_num(vals, nan=float("inf")).median()) if vals.numel() else float("inf")


def _stats(rows, rate, method, key) -> dict:
    return finite_stats(torch.tensor([r[key] for r in rows if r["rate"] == rate and r["method"] == method
                                      and r["finite"]]))


def _median(rows, rate, method, key) -> str:
    m = _stats(rows, rate, method, key)["median"]
    return "never" if m is None else f"{m:.3g}"


def draw(s, rows, out) -> None:
    fig, (ax1, ax2) = figure(ncols=2, width=4.2, height=3.4)
    for method in METHODS:
        spread(ax1, list(s.rates), [_stats(rows, rate, method, "iterations") for rate in s.rates], method)
        spread(ax2, list(s.rates), [_stats(rows, rate, method, "test_error") for rate in s.rates], method)
    ax1.set_xlabel("neuron pruning rate")
    ax1.set_ylabel("iterations to zero training hinge loss")
    ax1.set_title(f"{s.model}: N={s.N}, K={s.K}, {s.trials} trials; rewound")
    ax1.legend()
    ax2.set_xlabel("neuron pruning rate")
    ax2.set_ylabel("test error")
    ax2.legend()
    out.png("neuron_pruning.png", fig)
