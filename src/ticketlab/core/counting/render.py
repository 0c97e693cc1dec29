"""The terminal table of `Counts` (`str(counts)`), and the number formats and column alignment it uses.

Typed by duck: counts.py imports this module for `Counts.__str__`, so importing it back would be a cycle."""

import math

from ticketlab.core.masks import describe_density


def human(n: float) -> str:
    """4 significant digits with K/M/G: 60.97M, 235.2K, 724.4M."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{n:.4g}"


def times(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1f}x"


def _row_cells(row) -> list[str]:
    """One LayerCount's cells."""
    kept = describe_density(row.weight_density) if row.prunable else "-"
    density = f"{100 * row.input_density:.1f}% {row.density_source}" if row.input_density is not None else "-"
    if not row.macs_counted:
        macs = ["not counted"] * 3
    else:
        macs = [human(row.macs_dense), human(row.macs_weight_sparse), human(row.macs_weight_act_sparse)]
    return [row.name, row.kind, human(row.params), kept, density, *macs]


def aligned_table(header: list[str], rows: list[list[str]], right: set[int], rule: bool = True) -> list[str]:
    """Aligned columns, with a rule under the header unless `rule` is False; columns in `right` (numbers) are
    right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    rules = ["  ".join("-" * w for w in widths)] if rule else []
    return [line(header), *rules, *(line(r) for r in rows)]


def format_counts(counts) -> str:
    """Per-layer table of a `Counts` with totals and reduction ratios, for the terminal (also `str(counts)`)."""
    header = ["layer", "type", "params", "weights", "input density", "MACs dense", "weight-sparse",
              "weight x act"]
    total_kept = describe_density(counts.weight_density) if counts.prunable else "-"
    total = ["total", "", human(counts.params), total_kept, "", human(counts.macs_dense),
             f"{human(counts.macs_weight_sparse)} ({times(counts.mac_reduction_weight)})",
             f"{human(counts.macs_weight_act_sparse)} ({times(counts.mac_reduction_weight_act)})"]
    lines = aligned_table(header, [_row_cells(r) for r in counts.layers] + [total], right={2, 5, 6, 7})
    lines.insert(len(lines) - 1, lines[1])
    lines += [
        "",
        f"parameters: {counts.params:,} total, {counts.prunable:,} prunable, {counts.kept:,} kept "
        f"({times(counts.param_reduction)} fewer)",
        f"MACs per sample: dense {counts.macs_dense:,}; weight-sparse {counts.macs_weight_sparse:,} "
        f"({times(counts.mac_reduction_weight)} fewer);",
        f"  weight x input-activation {round(counts.macs_weight_act_sparse):,} "
        f"({times(counts.mac_reduction_weight_act)} fewer), Han et al.'s approximation: weight-sparse x input density",
        f"example batch: {counts.batch_size} x {tuple(counts.example_shape[1:])}; 'weights' = kept fraction of the "
        "prunable weights",
        "not counted: bias adds, norms, pooling, activations, residual adds, softmax (see docs/counting.md)",
        *(f"note: {n}" for n in counts.notes),
    ]
    return "\n".join(lines)
