"""Helpers and figure of `init-samples`."""

import math

import torch

from ticketlab.paper.theory.fitting import finite_stats
from ticketlab.paper.theory.plots import figure, spread


def draw(s, rows, boundary, out) -> None:
    fig, (ax1, ax2) = figure(ncols=2, width=4.4, height=3.6)
    d = s.ds[len(s.ds) // 2]
    for r in (r for r in s.rs if r <= d):
        stats = [finite_stats(torch.tensor([row["init_error"] for row in rows if row["d"] == d and row["r"] == r
                                            and row["N"] == N])) for N in s.Ns]
        spread(ax1, list(s.Ns), stats, f"r={r}")
    ax1.axhline(s.tau, color="gray", ls=":", label=f"tau = {s.tau}")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("N (samples)")
    ax1.set_ylabel("aligned relative error of the spectral init")
    ax1.set_title(f"d={d}, K={s.K}, r*={s.r_star}, {s.trials} trials", fontsize=8)
    ax1.legend(fontsize=6)
    for dd, marker in zip(s.ds, "os^v", strict=False):
        pts = [(b["r"], b["N_tau"]) for b in boundary if b["d"] == dd and math.isfinite(b["N_tau"])]
        if pts:
            ax2.plot(*zip(*pts, strict=True), marker=marker, label=f"d={dd}")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("r (inputs kept per neuron)")
    ax2.set_ylabel(f"N_tau: half the trials within {s.tau}")
    ax2.legend(fontsize=6)
    out.png("init_samples.png", fig)
