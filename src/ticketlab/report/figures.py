"""The report's figures, drawn with matplotlib's object API on the Agg canvas: no pyplot, so no global backend
switch and no figure kept alive in a registry. Each function takes a report `Group` and returns PNG bytes, or
None when there is nothing to draw yet."""

import io
import math

import torch

from ticketlab.core.extras import missing
from ticketlab.core.masks import describe_density
from ticketlab.report import LABELS, Group, Stat

try:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator
except ImportError:
    raise missing("matplotlib", "plotting", "plot") from None

COLORS = {"imp": "#1f77b4", "random_pruning": "#9467bd", "random_reinit": "#ff7f0e", "oneshot": "#2ca02c"}
DENSE_COLOR = "#555555"
STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linestyle": "-", "axes.spines.top": False,
    "axes.spines.right": False, "legend.frameon": False, "savefig.dpi": 120, "figure.dpi": 120,
}


def new_figure(width: float = 6.4, height: float = 4.2) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png")
    return buf.getvalue()


def styled(draw):
    """Run a drawing function under the report style (rcParams apply when axes and artists are created)."""
    def wrapper(group: Group) -> bytes | None:
        with matplotlib.rc_context(STYLE):
            return draw(group)
    wrapper.__name__, wrapper.__doc__ = draw.__name__, draw.__doc__
    return wrapper


def band(ax, x: list, y: list, spread: list, color, alpha: float) -> None:
    """A shaded y ± spread band (nothing when every spread is 0, e.g. a single seed)."""
    if any(spread):
        low = [a - s for a, s in zip(y, spread, strict=True)]
        high = [a + s for a, s in zip(y, spread, strict=True)]
        ax.fill_between(x, low, high, color=color, alpha=alpha, linewidth=0)


def percent_label(value: float, _pos=None) -> str:
    """Frankle & Carbin's tick labels: 100, 51.3, 21.1, 7.0, 3.6, 0.45."""
    if value >= 99.95:
        return "100"
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def density_axis(ax, densities: list[float]) -> None:
    """Log x axis of percent of weights remaining, decreasing left to right, ticks at the measured densities."""
    ticks = sorted({round(d, 3) for d in densities}, reverse=True)
    step = max(1, math.ceil(len(ticks) / 9))
    shown = ticks[::step] + ([ticks[-1]] if (len(ticks) - 1) % step else [])
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(shown))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(percent_label))
    ax.set_xlim(max(ticks) * 1.2, min(ticks) / 1.2)
    ax.set_xlabel("weights remaining (%)")


def versus_density(group: Group, value: str, ylabel: str, scale: float, title: str) -> bytes | None:
    """One line per kind (mean, shaded ± std over seeds) of `value` against density, and the dense level."""
    series = {k: [r for r in group.rows(k) if getattr(r, value) is not None and r.density is not None]
              for k in group.kinds()}
    series = {k: rows for k, rows in series.items() if rows}
    if not any(r.level >= 1 for rows in series.values() for r in rows):
        return None
    fig = new_figure()
    ax = fig.add_subplot()
    dense = next((r for r in series.get("imp", []) if r.level == 0), None)
    if dense is not None:
        stat: Stat = getattr(dense, value)
        ax.axhline(stat.mean * scale, color=DENSE_COLOR, linestyle="--", linewidth=1.2, label="dense (level 0)")
        if stat.std:
            ax.axhspan((stat.mean - stat.std) * scale, (stat.mean + stat.std) * scale, color=DENSE_COLOR, alpha=0.1)
    for kind, rows in series.items():
        x = [100 * r.density.mean for r in rows]
        y = [getattr(r, value).mean * scale for r in rows]
        spread = [getattr(r, value).std * scale for r in rows]
        color = COLORS.get(kind)
        (line,) = ax.plot(x, y, marker="o", markersize=4, linewidth=1.8, color=color, label=LABELS.get(kind, kind))
        band(ax, x, y, spread, line.get_color(), alpha=0.18)
    density_axis(ax, [100 * r.density.mean for rows in series.values() for r in rows])
    ax.set_ylabel(ylabel)
    n = len(group.runs)
    spread = f" — mean ± std over {n} seeds" if n > 1 else ""  # on its own line: a long group label fills the first
    ax.set_title(f"{title}{spread}\n{group.label}", fontsize=10)
    ax.legend(loc="best")
    return to_png(fig)


@styled
def accuracy_vs_density(group: Group) -> bytes | None:
    """Test accuracy at early stop against weights remaining (Frankle & Carbin's Figure 3, the talk's Figure 7)."""
    return versus_density(group, "acc", "test accuracy at early stop (%)", 100.0, "Accuracy vs weights remaining")


@styled
def early_stop_vs_density(group: Group) -> bytes | None:
    """Early-stop iteration (minimum validation loss) against weights remaining: the convergence claim."""
    return versus_density(group, "stop", "early-stop iteration", 1.0, "Early-stop iteration vs weights remaining")


def mean_curve(metrics_per_seed: list[list[dict]], key: str = "test_acc") -> tuple[list, list, list]:
    """Steps evaluated in every seed, with the mean and std of `key` over seeds."""
    by_seed = [{m["step"]: m[key] for m in metrics if m.get(key) is not None} for metrics in metrics_per_seed]
    by_seed = [s for s in by_seed if s]
    if not by_seed:
        return [], [], []
    steps = sorted(set.intersection(*(set(s) for s in by_seed)))
    stats = [Stat.of(s[step] for s in by_seed) for step in steps]
    return steps, [st.mean for st in stats], [st.std for st in stats]


def pick_levels(levels: list[int], most: int = 6) -> list[int]:
    """At most `most` levels spread evenly, always the first and the last."""
    if len(levels) <= most:
        return levels
    return sorted({levels[round(i * (len(levels) - 1) / (most - 1))] for i in range(most)})


@styled
def training_curves(group: Group) -> bytes | None:
    """Test accuracy against iteration for a few IMP levels, coloured from dense (dark) to sparse (light)."""
    curves = []
    for level in group.levels("imp"):
        steps, mean, std = mean_curve([s.metrics for s in group.stages("imp", level)])
        if steps:
            curves.append((level, group.row("imp", level).density, steps, mean, std))
    curves = [c for c in curves if c[0] in pick_levels([c[0] for c in curves])]
    if not curves:
        return None
    fig = new_figure(6.8, 4.2)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"]
    later = []  # accuracies after the first evaluation set the y range; step 0 is near chance
    for i, (level, density, steps, mean, std) in enumerate(curves):
        color = cmap(0.9 * i / max(len(curves) - 1, 1))
        kept = f", kept {100 * density.mean:.1f}%" if density else ""
        y = [100 * v for v in mean]
        ax.plot(steps, y, color=color, linewidth=1.6, label=f"level {level}{kept}")
        band(ax, steps, y, [100 * s for s in std], color, alpha=0.15)
        later += y[1:]
    if later:
        low, high = min(later), max(later)
        pad = max(0.5, 0.08 * (high - low))
        ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
    ax.set_xlabel("training iteration")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Training curves (IMP)\n{group.label}", fontsize=10)
    ax.legend(loc="lower right")
    return to_png(fig)


@styled
def layer_density(group: Group) -> bytes | None:
    """Density of each prunable tensor at each IMP level (log scale), and the overall density."""
    levels, per_layer, overall = [], {}, []
    for level in group.levels("imp"):
        tables = [s.layer_density() for s in group.stages("imp", level)]
        tables = [t for t in tables if t]
        if not tables:
            continue
        levels.append(level)
        for name in tables[0]:
            per_layer.setdefault(name, []).append(100 * Stat.of(t.get(name) for t in tables).mean)
        density = group.row("imp", level).density
        overall.append(100 * density.mean if density else math.nan)
    if not levels:
        return None
    fig = new_figure(6.8, 4.2)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab10" if len(per_layer) <= 10 else "viridis"]
    for i, (name, values) in enumerate(per_layer.items()):
        color = cmap(i) if len(per_layer) <= 10 else cmap(i / max(len(per_layer) - 1, 1))
        ax.plot(levels[-len(values):], values, marker="o", markersize=3, linewidth=1.4, color=color, label=name)
    ax.plot(levels, overall, color="black", linestyle="--", linewidth=1.4, label="all prunable weights")
    ax.set_yscale("log")
    lowest = min(v for values in [*per_layer.values(), overall] for v in values if v > 0)
    decades = math.log10(100 / lowest) if lowest < 100 else 0
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades > 1 else (1.0, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xticks(levels if len(levels) <= 20 else levels[:: math.ceil(len(levels) / 20)])
    ax.set_xlabel("IMP level")
    ax.set_ylabel("weights kept (%)")
    ax.set_title(f"Density per layer\n{group.label}", fontsize=10)
    outside = len(per_layer) > 6
    ax.legend(loc="upper left" if outside else "lower left", bbox_to_anchor=(1.01, 1) if outside else None,
              fontsize=8 if outside else 9)
    return to_png(fig)


def neuron_norms_of(weights: dict, masks) -> dict[str, torch.Tensor]:
    """L2 norm of each output neuron's (or filter's) incoming weights, after the mask, per hidden tensor.

    The last masked tensor is taken as the output layer and left out (its 'neurons' are class logits)."""
    names = [n for n in masks if weights.get(n) is not None and weights[n].dim() >= 2]
    hidden = names[:-1] or names
    return {n: torch.linalg.vector_norm((weights[n] * masks[n]).float().flatten(1), dim=1) for n in hidden}


def pooled_norms(group: Group, level: int) -> dict[str, torch.Tensor]:
    """Neuron norms of a level's final weights, concatenated over seeds."""
    out: dict[str, list[torch.Tensor]] = {}
    for stage in group.stages("imp", level):
        weights, masks = (stage.final_weights(), stage.masks()) if stage.done else (None, None)
        if weights is None or masks is None:
            continue
        for name, norms in neuron_norms_of(weights, masks).items():
            out.setdefault(name, []).append(norms)
    return {n: torch.cat(v) for n, v in out.items()}


@styled
def neuron_norms(group: Group) -> bytes | None:
    """Histogram of neuron norms: dense level 0 against the sparsest finished IMP level (the talk's Figure 4)."""
    dense = pooled_norms(group, 0)
    finished = [lv for lv in group.levels("imp") if lv > 0 and any(s.done for s in group.stages("imp", lv))]
    sparse_level = finished[-1] if finished else None
    sparse = pooled_norms(group, sparse_level) if sparse_level is not None else {}
    if not dense or not sparse:
        return None
    names = [n for n in dense if n in sparse]
    panels = {n: (dense[n], sparse[n]) for n in names} if len(names) <= 4 else {
        "all hidden layers (pooled)": (torch.cat([dense[n] for n in names]), torch.cat([sparse[n] for n in names]))}
    fig = new_figure(min(4.2 * len(panels), 12.0) if len(panels) > 1 else 6.4, 3.9)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    density = group.row("imp", sparse_level).density
    sparse_label = f"level {sparse_level}, {describe_density(density.mean)}" if density else f"level {sparse_level}"
    for ax, (name, (d, s)) in zip(axes, panels.items(), strict=True):
        both = torch.cat([d, s])
        low, high = float(both.min()), float(both.max())
        bins = torch.linspace(low, high + 1e-9 + 0.01 * (high - low), 31).tolist()
        for values, color, label in [(d, DENSE_COLOR, "level 0 (dense)"), (s, COLORS["imp"], sparse_label)]:
            ax.hist(values.tolist(), bins=bins, color=color, alpha=0.35, histtype="stepfilled")
            ax.hist(values.tolist(), bins=bins, color=color, linewidth=1.4, histtype="step", label=label)
        zero = int((s == 0).sum())  # neurons whose every incoming weight is pruned sit at norm 0
        ax.set_title(name + (f"\n{zero} of {s.numel()} neurons fully pruned at level {sparse_level}" if zero else ""),
                     fontsize=9)
        ax.set_xlabel("L2 norm of a neuron's incoming weights")
        ax.set_ylabel("neurons")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    fig.suptitle(f"Neuron norms, final weights × mask\n{group.label}", fontsize=10)
    return to_png(fig)


FIGURES = [
    ("accuracy", accuracy_vs_density, "Test accuracy at early stop vs weights remaining"),
    ("early-stop", early_stop_vs_density, "Early-stop iteration vs weights remaining"),
    ("training-curves", training_curves, "Test accuracy during training, a few IMP levels"),
    ("layer-density", layer_density, "Weights kept per layer at each IMP level"),
    ("neuron-norms", neuron_norms, "Histogram of neuron norms: dense vs sparsest IMP level"),
]
