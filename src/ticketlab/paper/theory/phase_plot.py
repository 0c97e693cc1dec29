"""The phase figure: one success-rate heat map over (N, r) per variant, with N50 and the fitted line."""


from ticketlab.paper.theory.phase_fit import success_table
from ticketlab.paper.theory.plots import figure


def draw(s, rows, boundary, fits, out) -> None:
    n = len(s.variants)
    fig, axes = figure(ncols=n, width=3.4, height=3.6)
    axes = axes if n > 1 else [axes]
    for ax, v in zip(axes, s.variants, strict=True):
        grid = success_table(s, rows, v).nanmean(0).T  # (N, r)
        image = ax.imshow(grid.numpy(), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                          extent=(-0.5, len(s.rs) - 0.5, -0.5, len(s.Ns) - 0.5))
        ax.set_xticks(range(len(s.rs)), [str(r) for r in s.rs])
        ax.set_yticks(range(len(s.Ns)), [str(N) for N in s.Ns])
        ax.grid(False)
        pts = [(i, _interp(b["N50"], s.Ns)) for i, b in enumerate(x for x in boundary if x["variant"] == v)
               if b["N50"] == b["N50"]]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "^", color="white", mec="black", ms=6, label="N50")
        f = fits[v]
        if f["slope"] == f["slope"] and f["intercept"] == f["intercept"]:
            ax.plot(range(len(s.rs)), [_interp(f["slope"] * r + f["intercept"], s.Ns) for r in s.rs], "r--",
                    lw=1.2, label=f"N = {f['slope']:.1f}·r {f['intercept']:+.0f}")
        if pts:
            ax.legend(loc="upper left", frameon=True, facecolor="white", framealpha=0.85)
        ax.set_xlabel("r (inputs kept per neuron)")
        ax.set_title(f["label"], fontsize=8)
    axes[0].set_ylabel("N (training samples)")
    fig.colorbar(image, ax=axes[-1], label="success rate")
    fig.suptitle(f"success rate, d={s.d}, K={s.K}, r*={s.r_star}, {s.trials} trials/cell", fontsize=9)
    out.png("phase.png", fig)


def _interp(n: float, grid) -> float:
    """Position of n on a categorical axis whose ticks are at `grid` values (linear between ticks)."""
    if n <= grid[0]:
        return 0.0 if n == grid[0] else -0.5
    for i in range(1, len(grid)):
        if n <= grid[i]:
            return i - 1 + (n - grid[i - 1]) / (grid[i] - grid[i - 1])
    return len(grid) - 0.5
