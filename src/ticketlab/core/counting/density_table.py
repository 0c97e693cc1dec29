"""Per-layer density tables in Han et al. 2015's format (the packaged table or a CSV of that format), and masks
that keep exactly the densities a table gives."""

import csv
import math
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ticketlab.core.masks import Masks, prunable_names
from ticketlab.core.pruning import PruneSpec, prune, round_half_up
from ticketlab.errors import TicketlabError, closest


class LayerDensity(NamedTuple):
    weight: float  # fraction of the layer's weights kept
    input_activation: float | None  # fraction of non-zero input activations; None = not in the table


HAN_NETWORKS = {"alexnet": "alexnet", "vgg-16": "vgg-16", "vgg16": "vgg-16", "lenet-300-100": "lenet-300-100",
                "lenet300": "lenet-300-100", "lenet-5": "lenet-5", "lenet5": "lenet-5"}


def han_csv_text() -> str:
    return (resources.files("ticketlab") / "reference" / "han2015_layers.csv").read_text()


def read_density_rows(text: str, source: str) -> list[dict[str, str]]:
    """CSV rows (comment lines start with #), with `layer` and `weights_pct` required."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    missing = {"layer", "weights_pct"} - set(reader.fieldnames or [])
    if missing:
        raise TicketlabError(f"density table {source} lacks column(s) {', '.join(sorted(missing))}; needs layer, "
                             f"weights_pct and optionally act_pct or input_act_pct (percent)")
    return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


def _percent(row: dict[str, str], column: str, source: str) -> float | None:
    """A percentage cell as a fraction; empty -> None. Weight densities must be > 0 (a layer keeps something)."""
    text = row.get(column, "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    low_ok = value > 0.0 if column == "weights_pct" else value >= 0.0
    if not (low_ok and value <= 100.0):
        interval = "(0, 100]" if column == "weights_pct" else "[0, 100]"
        raise TicketlabError(f"density table {source}, layer {row['layer']!r}: {column} must be a percentage in "
                             f"{interval}, got {text!r}")
    return value / 100.0


def load_density_table(path_or_network, network: str | None = None) -> dict[str, LayerDensity]:
    """{layer: (weight density, input-activation density)} from Han et al.'s table or a CSV file of that format.

    `path_or_network`: a network of the packaged Han et al. table (alexnet, vgg-16/vgg16, lenet-300-100/lenet300,
    lenet-5/lenet5) or a CSV path with columns layer, weights_pct and optionally act_pct or input_act_pct, in
    percent; lines starting with # are comments; a `total` row is skipped. act_pct is the density of the layer's
    OUTPUT (Han et al.'s convention): a layer's input density is the act_pct of the row before it, and the first
    row's input (the network input) is dense. input_act_pct, when present, gives input densities directly.
    A file with a `network` column holding several networks needs `network=`.
    """
    key = str(path_or_network).lower()
    if key in HAN_NETWORKS and not Path(path_or_network).exists():
        text, source, network = han_csv_text(), "han2015_layers.csv", HAN_NETWORKS[key]
    else:
        try:
            text, source = Path(path_or_network).read_text(), str(path_or_network)
        except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
            raise TicketlabError(f"density table {path_or_network!r} is neither a readable CSV file nor one of "
                                 f"the built-in networks: {', '.join(HAN_NETWORKS)}") from None
    rows = _select_network(read_density_rows(text, source), network, source)
    return _densities(rows, source)


def _select_network(rows: list[dict[str, str]], network: str | None, source: str) -> list[dict[str, str]]:
    rows = [r for r in rows if r["layer"].lower() != "total"]
    networks = list(dict.fromkeys(r.get("network", "") for r in rows))
    if network is None:
        if len(networks) > 1:
            raise TicketlabError(f"density table {source} holds several networks ({', '.join(networks)}); "
                                 "choose one with network=")
        return rows
    network = HAN_NETWORKS.get(network.lower(), network)
    if network not in networks:
        raise TicketlabError(f"density table {source} has no network {network!r}; it has {', '.join(networks)}")
    return [r for r in rows if r.get("network", "") == network]


def _densities(rows: list[dict[str, str]], source: str) -> dict[str, LayerDensity]:
    if not rows:
        raise TicketlabError(f"density table {source} has no layer rows")
    table: dict[str, LayerDensity] = {}
    previous_output: float | None = 1.0  # the network input is dense
    for row in rows:
        if row["layer"] in table:
            raise TicketlabError(f"density table {source} names layer {row['layer']!r} twice")
        weight = _percent(row, "weights_pct", source)
        if weight is None:
            raise TicketlabError(f"density table {source}, layer {row['layer']!r}: weights_pct is empty")
        if "input_act_pct" in row:
            given = _percent(row, "input_act_pct", source)
        else:
            given = previous_output if "act_pct" in row else None
        table[row["layer"]] = LayerDensity(weight, given)
        previous_output = _percent(row, "act_pct", source)
    return table


def _check_layers(model: nn.Module, layers) -> None:
    params = dict(model.named_parameters())
    known = [n[: -len(".weight")] for n in params if n.endswith(".weight")]
    for layer in layers:
        if f"{layer}.weight" not in params:
            raise TicketlabError(f"density table names layer {layer!r}{closest(layer, known)}, which the model "
                                 f"does not have; model layers: {', '.join(known)}")


def masks_from_density_table(model: nn.Module, table: dict, seed: int = 0, criterion: str = "magnitude") -> Masks:
    """Masks keeping exactly round_half_up(density x numel) weights of each table layer; other weights are kept.

    `table`: {layer: LayerDensity or weight density}. Which weights are kept: the largest |w| of the model's
    current weights (`criterion="magnitude"`, ties to the lower index) or a seeded random choice
    (`criterion="random"`), via `ticketlab.core.pruning`. On the meta device weights have no values, so the first
    entries (row-major) are kept: the counts are exact, the positions arbitrary, which is all counting needs.
    """
    _check_layers(model, table)
    densities = {f"{layer}.weight": float(d[0] if isinstance(d, tuple) else d) for layer, d in table.items()}
    params = dict(model.named_parameters())
    names = list(dict.fromkeys(prunable_names(model) + list(densities)))
    masks = Masks.ones(model, names=names)
    kept = {n: round_half_up(d * params[n].numel()) for n, d in densities.items()}
    if any(p.is_meta for p in params.values()):
        return Masks({**masks, **{n: _first(params[n].shape, k) for n, k in kept.items()}})
    rates = {n: (params[n].numel() - k) / params[n].numel() for n, k in kept.items() if k > 0}
    spec = PruneSpec(criterion=criterion, scope="layer", rate=0.0, rates=rates, seed=seed)
    pruned = prune(model, masks, spec)
    return Masks({**pruned, **{n: _first(params[n].shape, 0) for n, k in kept.items() if k == 0}})


def _first(shape: torch.Size, kept: int) -> torch.Tensor:
    mask = torch.zeros(math.prod(shape), dtype=torch.bool)
    mask[:kept] = True
    return mask.reshape(shape)
