"""Figure helpers on matplotlib's object API and Agg canvas (no pyplot state). Small PNGs: 100 dpi."""

import io

from ticketlab.core.extras import missing

try:
    import matplotlib
    from matplotlib.figure import Figure
except ImportError:
    raise missing("matplotlib", "plotting", "plot") from None

STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "axes.grid": True,
         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False}
DPI = 100


def figure(ncols: int = 1, width: float = 5.2, height: float = 3.6, nrows: int = 1):
    """A Figure and its axes (a flat list, row-major, when there is more than one), under the lab's style;
    width and height are per panel."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
        axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]
    return fig, (axes if len(axes) > 1 else axes[0])


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def spread(ax, x, stats: list[dict], label: str, color=None, marker="o"):
    """Median line with the interquartile band, from `finite_stats` dicts (None entries skipped)."""
    pts = [(xi, s) for xi, s in zip(x, stats, strict=True) if s["median"] is not None]
    if not pts:
        return
    xs = [p[0] for p in pts]
    with matplotlib.rc_context(STYLE):
        line, = ax.plot(xs, [p[1]["median"] for p in pts], marker=marker, ms=3, label=label, color=color)
        ax.fill_between(xs, [p[1]["q25"] for p in pts], [p[1]["q75"] for p in pts], alpha=0.2,
                        color=line.get_color())
