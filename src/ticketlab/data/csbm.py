"""The contextual stochastic block model (CSBM): communities, Gaussian features around class means, and edges
drawn independently with one probability inside a community and another between communities.

`make_csbm` generates any size from a seed; the registered offline dataset `csbm` has Cora's sizes (2,708 nodes,
7 classes, 1,433 features, about 5,278 edges, edge homophily 0.81 as measured on Cora) and Planetoid's split
(20 training nodes per class, 500 validation, 1,000 test), so a run on it costs what a run on Cora costs.
"""

import torch
import torch.nn.functional as F

from ticketlab.data.source import DATASETS, Source
from ticketlab.data.splits import InMemory
from ticketlab.errors import TicketlabError
from ticketlab.models.graph import Graph

CSBM_SEED = 0
CORA_LIKE = {"num_nodes": 2708, "num_classes": 7, "num_features": 1433, "avg_degree": 2 * 5278 / 2708,
             "homophily": 0.81, "signal": 2.5}
ROWS_PER_CHUNK = 1024  # rows of the Bernoulli draw at a time: memory O(chunk x N)


def edge_probabilities(num_nodes: int, num_classes: int, avg_degree: float, homophily: float) -> tuple[float, float]:
    """(p_intra, p_inter) giving `avg_degree` expected neighbours, a fraction `homophily` of them in the own
    community (equal-sized communities)."""
    size = num_nodes / num_classes
    p_intra = avg_degree * homophily / (size - 1)
    p_inter = avg_degree * (1 - homophily) / (num_nodes - size)
    if not (0 <= p_intra <= 1 and 0 <= p_inter <= 1):
        raise TicketlabError(f"degree {avg_degree} with homophily {homophily} needs edge probabilities "
                             f"{p_intra:.3g}, {p_inter:.3g} outside [0, 1]")
    return p_intra, p_inter


def make_csbm(num_nodes: int, num_classes: int, num_features: int, p_intra: float, p_inter: float,
              signal: float, seed: int = 0) -> tuple[Graph, torch.Tensor]:
    """(graph, labels) of a CSBM. Communities are equal-sized (sizes differ by at most 1), randomly placed;
    class means are random directions of norm `signal`; features = mean of the node's class + N(0, I) noise;
    each pair of nodes is an edge with probability p_intra (same class) or p_inter (different classes)."""
    if num_classes < 2 or num_nodes < num_classes or num_features < 1:
        raise TicketlabError(f"csbm needs num_nodes >= num_classes >= 2 and num_features >= 1, got "
                             f"{num_nodes}, {num_classes}, {num_features}")
    for name, p in (("p_intra", p_intra), ("p_inter", p_inter)):
        if not 0.0 <= p <= 1.0:
            raise TicketlabError(f"csbm {name} must be a probability in [0, 1], got {p!r}")
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(num_nodes) % num_classes)[torch.randperm(num_nodes, generator=generator)]
    directions = torch.randn(num_classes, num_features, generator=generator)
    means = signal * directions / directions.norm(dim=1, keepdim=True)
    features = means[labels] + torch.randn(num_nodes, num_features, generator=generator)
    probability = torch.tensor([[p_inter, p_intra]])
    found = []
    for start in range(0, num_nodes, ROWS_PER_CHUNK):
        rows = torch.arange(start, min(start + ROWS_PER_CHUNK, num_nodes))
        same = (labels[rows, None] == labels[None, :]).long()
        draw = torch.rand(rows.numel(), num_nodes, generator=generator) < probability[0, same]
        draw &= torch.arange(num_nodes)[None, :] > rows[:, None]  # each unordered pair once, no self-loops
        r, c = draw.nonzero(as_tuple=True)
        found.append(torch.stack([rows[r], c]))
    return Graph(features, torch.cat(found, dim=1), "csbm"), labels


def planetoid_like_split(labels: torch.Tensor, per_class: int, val: int, test: int,
                         generator: torch.Generator) -> dict[str, torch.Tensor]:
    """`per_class` training nodes of every class, then `val` and `test` nodes from the rest (random, sorted)."""
    order = torch.randperm(labels.numel(), generator=generator)
    ordered = labels[order]
    rank = (F.one_hot(ordered).cumsum(0) - 1).gather(1, ordered[:, None]).squeeze(1)  # rank within class
    rest = order[rank >= per_class]
    return {"train": order[rank < per_class].sort().values, "val": rest[:val].sort().values,
            "test": rest[val : val + test].sort().values}


@DATASETS.register("csbm")
def csbm(root=None) -> Source:
    """Contextual SBM of Cora's size (generated): 2,708 nodes, 7 classes, 1,433 features, 140/500/1,000."""
    settings = dict(CORA_LIKE)
    p_intra, p_inter = edge_probabilities(settings["num_nodes"], settings["num_classes"], settings.pop("avg_degree"),
                                          settings.pop("homophily"))
    graph, labels = make_csbm(**settings, p_intra=p_intra, p_inter=p_inter, seed=CSBM_SEED)
    split = planetoid_like_split(labels, 20, 500, 1000, torch.Generator().manual_seed(CSBM_SEED + 1))
    part = {k: InMemory(ids, labels[ids]) for k, ids in split.items()}
    return Source(part["train"], part["test"], num_classes=settings["num_classes"], val_size=len(part["val"]),
                  model_options={"graph": graph}, val=part["val"])
