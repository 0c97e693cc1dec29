"""Honest parameter and MAC counts per layer: dense, weight-sparse, and weight x input-activation sparse.

What is counted and what is not: count.py's docstring and docs/counting.md. The package, one concept a file:
counts.py (result types), work.py (a row's accumulated work), hooks.py (MACs of weighted layers, `count_macs`
modules and MHA), products.py (activation x activation products), observe.py (the observed forward pass),
count.py (`count`, rows and notes), render.py (the terminal table), density_table.py (Han et al. 2015 tables).
"""

from ticketlab.core.counting.count import DEFAULT_BATCH, NO_MAC_TYPES, count, example_input_for
from ticketlab.core.counting.counts import TOTALS, Counts, LayerCount, ratio
from ticketlab.core.counting.density_table import (
    HAN_NETWORKS,
    LayerDensity,
    han_csv_text,
    load_density_table,
    masks_from_density_table,
    read_density_rows,
)
from ticketlab.core.counting.hooks import CONV_TYPES, TRANSPOSED_TYPES, WEIGHTED_TYPES
from ticketlab.core.counting.render import aligned_table, format_counts, human, times

__all__ = ["CONV_TYPES", "Counts", "DEFAULT_BATCH", "HAN_NETWORKS", "LayerCount", "LayerDensity", "NO_MAC_TYPES",
           "TOTALS", "TRANSPOSED_TYPES", "WEIGHTED_TYPES", "aligned_table", "count", "example_input_for",
           "format_counts", "han_csv_text", "human", "load_density_table", "masks_from_density_table", "ratio",
           "read_density_rows", "times"]
