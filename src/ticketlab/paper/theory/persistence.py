"""Experiment `persistence` (Theorem 3.2 of the talk): whether a neuron is good is decided at initialisation.

Over training iterations, for the set G0 of neurons good at initialisation: the fraction still good, and the
overlap |G0 ∩ top-|G0| neurons by norm| / |G0| (the neurons magnitude pruning would keep). Chance level for the
overlap is |G0| / K.
"""

from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import memory, positive
from ticketlab.paper.theory.features import FeatureSettings, feature_bytes
from ticketlab.paper.theory.fitting import finite_stats
from ticketlab.paper.theory.norms import train_model
from ticketlab.paper.theory.patchnet import goodness, train_patchnet
from ticketlab.paper.theory.plots import figure, spread
from ticketlab.paper.theory.registry import experiment
from ticketlab.paper.theory.verdict import verdict


@dataclass(frozen=True)
class PersistenceSettings(FeatureSettings):
    N: int = 400
    model: str = "mlp"
    snapshot_every: int = 5


def top_overlap(norms: torch.Tensor, good0: torch.Tensor) -> torch.Tensor:
    """|G0 ∩ top-|G0| by norm| / |G0| per trial (ties broken by position)."""
    size = good0.sum(1)
    rank = norms.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    top = rank < size.unsqueeze(1)
    return (top & good0).sum(1).double() / size.clamp_min(1)


@experiment("persistence", "a neuron good at initialisation stays good; magnitude keeps the good-at-init neurons",
            PersistenceSettings, quick={"trials": 3, "N": 100, "max_iters": 200, "snapshot_every": 20})
def run(s: PersistenceSettings, seed: int, out, max_bytes: int, progress=print) -> dict:
    s.check_all()
    positive("N (training samples)", s.N)
    positive("snapshot_every", s.snapshot_every)
    memory("persistence", feature_bytes(s.trials, s.N, s.P, s.d, s.K)
           + 4 * s.trials * s.K * s.d * (s.max_iters // s.snapshot_every + 1), max_bytes)
    patterns, X, y, W0, alive = train_model(s, s.model, s.N, seed)
    res = train_patchnet(W0, X, y, alive, s.lr, s.max_iters, snapshot_every=s.snapshot_every)
    _, good0 = goodness(W0, patterns)
    rows = []
    for it, W in res.snapshots:
        _, good = goodness(W, patterns)
        still = (good & good0).sum(1).double() / good0.sum(1).clamp_min(1)
        overlap = top_overlap(W.norm(dim=-1), good0)
        rows += [{"iteration": it, "trial": t, "finite": bool(res.finite[t]), "still_good": float(still[t]),
                  "top_magnitude_overlap": float(overlap[t]), "chance": float(good0[t].sum()) / s.K}
                 for t in range(s.trials)]
    out.csv("trials.csv", rows)
    its = sorted({row["iteration"] for row in rows})
    last = its[-1]
    final = {k: finite_stats(torch.tensor([row[k] for row in rows if row["iteration"] == last and row["finite"]]))
             for k in ("still_good", "top_magnitude_overlap", "chance")}
    lines = [f"after {last} iterations: good-at-init still good median {final['still_good']['median']:.3f} "
             f"(min {min(r['still_good'] for r in rows if r['iteration'] == last):.3f}); overlap with the top-|G0| "
             f"magnitude neurons median {final['top_magnitude_overlap']['median']:.3f} (chance "
             f"{final['chance']['median']:.3f})"]
    first_full = next((it for it in its if _median(rows, it, "top_magnitude_overlap") >= 0.999), None)
    lines.append(f"median overlap reaches 1 at iteration {first_full}" if first_full is not None
                 else "median overlap never reaches 1")
    draw(s, rows, its, out)
    still_min = min(r["still_good"] for r in rows if r["iteration"] == last and r["finite"])
    overlap = final["top_magnitude_overlap"]
    word = "agrees" if still_min >= 0.999 and overlap["median"] >= 0.9 else \
        "partly" if overlap["median"] > final["chance"]["median"] else "disagrees"
    text = (f"after {last} iterations (σ={s.sigma}): good-at-init neurons still good, min over trials {still_min:.3f}; "
            f"overlap of G0 with the top-|G0| norms median {overlap['median']:.3f} (chance "
            f"{final['chance']['median']:.3f})")
    verdicts = [verdict("a neuron good at initialisation stays good, so magnitude keeps the good-at-init neurons",
                        word, text, "persistence.png", f"{s.model}, σ={s.sigma:g}")]
    return {"fits": {}, "lines": lines, "verdicts": verdicts, "nonfinite_trials": int((~res.finite).sum()),
            "final": final}


def _median(rows, it, key):
    return finite_stats(torch.tensor([row[key] for row in rows if row["iteration"] == it and row["finite"]]))["median"]


def draw(s, rows, its, out) -> None:
    fig, ax = figure(width=5.2, height=3.4)
    for key, label in (("still_good", "good at init, still good"),
                       ("top_magnitude_overlap", "overlap of good-at-init with top-|G0| by norm"),
                       ("chance", "chance overlap |G0|/K")):
        stats = [finite_stats(torch.tensor([r[key] for r in rows if r["iteration"] == it and r["finite"]]))
                 for it in its]
        spread(ax, its, stats, label, marker=None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("fraction of G0 (median, IQR)")
    ax.set_title(f"{s.model}: N={s.N}, K={s.K}, {s.trials} trials")
    ax.set_ylim(0, 1.05)
    ax.legend()
    out.png("persistence.png", fig)
