"""Experiment `neuron-pruning` (the talk's Figure 5 for a shallow network): train the dense network, remove the
lowest-norm neurons (magnitude: globally, or within each output-sign group) or random neurons, rewind the
survivors to their initial weights, retrain.
Measured vs the neuron pruning rate: iterations until every training margin is >= 1, and test error.
Claim: pruning the lowest-magnitude neurons cuts the iterations without hurting test accuracy.
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

METHODS = ("magnitude", "magnitude per sign", "random")


@dataclass(frozen=True)
class NeuronPruningSettings(FeatureSettings):
    N: int = 400
    N_test: int = 2000
    model: str = "mlp"
    rates: tuple[float, ...] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


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
        masks = {"magnitude": keep_top_neurons(norms, keep), "magnitude per sign": keep_top_per_sign(norms, rate),
                 "random": keep_top_neurons(torch.rand(norms.shape, generator=g), keep)}
        for method, kept in masks.items():
            res = train_patchnet(W0, X, y, kept, s.lr, s.max_iters)  # rewind: restart from the initial weights
            nonfinite += int((~res.finite).sum())
            test = error_rate(res.weights, X_test, y_test, kept)
            rows += [{"rate": rate, "kept_neurons": int(kept[0].sum()), "method": method, "trial": t,
                      "finite": bool(res.finite[t]), "iterations": float(res.converged_at[t]),
                      "test_error": float(test[t])}
                     for t in range(s.trials)]
        progress(f"  rate {rate}: median iterations magnitude {_median(rows, rate, 'magnitude', 'iterations')}, "
                 f"random {_median(rows, rate, 'random', 'iterations')}")
    out.csv("trials.csv", rows)
    lines = []
    for method in METHODS:
        never = sum(1 for r in rows if r["method"] == method and r["finite"] and r["iterations"] != r["iterations"])
        lines.append(f"{method}: median iterations " + ", ".join(
            f"{rate:g}→{_median(rows, rate, method, 'iterations')}" for rate in s.rates) + "; median test error " +
            ", ".join(f"{rate:g}→{_median(rows, rate, method, 'test_error')}" for rate in s.rates) +
            f"; {never} runs never converged within {s.max_iters}")
    draw(s, rows, out)
    return {"fits": {}, "lines": lines, "nonfinite_trials": nonfinite}


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
