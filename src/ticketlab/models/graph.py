"""Graphs for node classification: the `Graph` container and `Adjacency`, the GCN aggregation over kept edges.

Conventions (docs/graphs.md):
- A graph is undirected. `Graph.edges` holds each edge once, as (u, v) with u < v, sorted, without duplicates
  and without self-loops; E = `num_edges` counts undirected edges.
- The edge mask has one entry per undirected edge and is used for both directions, so the adjacency stays
  symmetric whatever is pruned. Self-loops are always kept and are not part of the edge mask.
- Â = D^-1/2 (A ⊙ M + I) D^-1/2: M holds the learned edge weights (1 at initialisation, i.e. Kipf & Welling's
  GCN), D counts the *kept* edges of each node plus its self-loop. A pruned edge (mask value exactly 0, as masked
  training keeps it) is absent: it carries no message and does not count in any degree.
"""

from dataclasses import dataclass

import torch
from torch import nn

from ticketlab.errors import TicketlabError


@dataclass(frozen=True, eq=False)
class Graph:
    """Node features (N, F) float32 and undirected edges (2, E) int64 in canonical form (see the module doc)."""

    features: torch.Tensor
    edges: torch.Tensor
    name: str = "graph"

    def __post_init__(self):
        if self.features.dim() != 2 or self.features.dtype != torch.float32:
            raise TypeError(f"graph features must be float32 (N, F), got {self.features.dtype} "
                            f"{tuple(self.features.shape)}")
        e = self.edges
        if e.dim() != 2 or e.shape[0] != 2 or e.dtype != torch.int64:
            raise TypeError(f"graph edges must be int64 (2, E), got {e.dtype} {tuple(e.shape)}")
        if e.is_meta:  # shapes only
            return
        if e.numel() and not (e[0] < e[1]).all():
            raise ValueError("graph edges must be canonical (u < v): build them with undirected_edges()")
        if e.numel() and int(e.max()) >= self.num_nodes:
            raise ValueError(f"graph edges name node {int(e.max())}, but the graph has {self.num_nodes} nodes")

    @classmethod
    def from_pairs(cls, features: torch.Tensor, pairs: torch.Tensor, name: str = "graph") -> "Graph":
        """A graph from any (2, M) node pairs: direction, duplicates and self-loops are dropped."""
        return cls(features, undirected_edges(pairs, features.shape[0]), name)

    @property
    def num_nodes(self) -> int:
        return self.features.shape[0]

    @property
    def num_features(self) -> int:
        return self.features.shape[1]

    @property
    def num_edges(self) -> int:
        """Undirected edges, self-loops excluded."""
        return self.edges.shape[1]

    def keep_edges(self, edge_mask: torch.Tensor) -> "Graph":
        """The graph with only the edges the mask keeps (True or non-zero): a graph ticket as a graph."""
        check_edge_mask(edge_mask, self.num_edges, self.name)
        return Graph(self.features, self.edges[:, edge_mask.to(self.edges.device) != 0], self.name)

    def describe(self) -> str:
        return f"{self.name}: {self.num_nodes:,} nodes, {self.num_edges:,} undirected edges, " \
               f"{self.num_features:,} features"


def undirected_edges(pairs: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Canonical (2, E) edges from (2, M) pairs: (min, max) per pair, self-loops dropped, unique, sorted."""
    pairs = torch.as_tensor(pairs, dtype=torch.int64).reshape(2, -1)
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= num_nodes):
        bad = int(pairs.min()) if int(pairs.min()) < 0 else int(pairs.max())
        raise TicketlabError(f"edge list names node {bad}; nodes are 0..{num_nodes - 1}")
    low, high = pairs.min(dim=0).values, pairs.max(dim=0).values
    keep = low != high
    key = torch.unique(low[keep] * num_nodes + high[keep])  # sorted
    return torch.stack([key // num_nodes, key % num_nodes])


CORA_SIZES = {"nodes": 2708, "features": 1433, "edges": 5278, "classes": 7}


def cora_shaped() -> Graph:
    """A stand-in with Cora's sizes (all-one features, 5,278 arbitrary edges) for models built without a graph, e.g.
    by `ticketlab models` and `ticketlab count`: parameter and MAC counts equal Cora's, outputs mean nothing.
    Its tensors follow the default device (meta under `build_model(..., device="meta")`)."""
    n = CORA_SIZES["nodes"]
    chain = torch.arange(n - 1)  # edges (i, i + 1) and (i, i + 2): canonical and distinct
    skip = torch.arange(CORA_SIZES["edges"] - (n - 1))
    pairs = torch.cat([torch.stack([chain, chain + 1]), torch.stack([skip, skip + 2])], dim=1)
    edges = pairs[:, (pairs[0] * n + pairs[1]).argsort()]
    return Graph(torch.ones(n, CORA_SIZES["features"]), edges, "cora-shaped placeholder")


def check_edge_mask(edge_mask: torch.Tensor, num_edges: int, graph_name: str) -> None:
    """An edge mask belongs to the graph it was found on: a different edge count is a user error."""
    message = edge_mask_mismatch(tuple(edge_mask.shape), num_edges, graph_name)
    if message:
        raise TicketlabError(message)


def edge_mask_mismatch(shape: tuple[int, ...], num_edges: int, graph_name: str) -> str | None:
    """The error message for an edge mask of `shape` on a graph of `num_edges` edges, or None when it fits."""
    if shape == (num_edges,):
        return None
    got = f"{shape[0]:,} entries" if len(shape) == 1 else f"shape {shape}"
    return (f"edge mask has {got} but graph {graph_name!r} has {num_edges:,} undirected edges; "
            f"an edge mask only fits the graph it was found on")


def edge_density(edge_mask: torch.Tensor) -> float:
    """Fraction of edges kept (non-zero / True entries)."""
    return int(torch.count_nonzero(edge_mask)) / max(edge_mask.numel(), 1)


class Adjacency(nn.Module):
    """h -> Â h over the kept edges, with a learnable edge mask (one weight per undirected edge, initialised to 1).

    The edge mask is a prunable parameter (`PRUNABLE_PARAMETERS`, read by `ticketlab.core.masks.prunable_names`):
    IMP prunes edges by its magnitude like any weight. Graph tensors are non-persistent buffers, so weight files
    hold the edge mask but not the graph."""

    PRUNABLE_PARAMETERS = ("edge_mask",)

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph_name = graph.name
        self.num_nodes = graph.num_nodes
        self.register_buffer("edges", graph.edges, persistent=False)
        self.edge_mask = nn.Parameter(torch.ones(graph.num_edges))

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u, v, w_uv / sqrt(d_u d_v), 1 / d) over the kept edges (each once); d counts kept edges + self-loop."""
        if self.edge_mask.is_meta:  # shapes only (counting on the meta device): every edge
            kept = torch.arange(self.edge_mask.numel(), device="meta")
        else:
            kept = torch.nonzero(self.edge_mask).squeeze(1)
        u, v = self.edges[0, kept], self.edges[1, kept]
        ones = torch.ones_like(u, dtype=self.edge_mask.dtype)
        degree = torch.ones(self.num_nodes, dtype=self.edge_mask.dtype, device=u.device)
        degree = degree.index_add(0, u, ones).index_add(0, v, ones)
        inverse_sqrt = degree.rsqrt()
        return u, v, self.edge_mask[kept] * inverse_sqrt[u] * inverse_sqrt[v], inverse_sqrt.square()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        u, v, coefficient, self_weight = self.coefficients()
        out = h * self_weight.unsqueeze(1).to(h.dtype)
        coefficient = coefficient.unsqueeze(1).to(h.dtype)
        # Both directions of every kept edge, from one shared weight: Â stays symmetric.
        return out.index_add(0, v, h[u] * coefficient).index_add(0, u, h[v] * coefficient)

    def dense(self) -> torch.Tensor:
        """Â as a dense (N, N) matrix, for inspection and tests."""
        return self.forward(torch.eye(self.num_nodes, device=self.edge_mask.device))

    # -- hooks read by ticketlab.core.counting and ticketlab.core.masks ----------------------------------------------
    def count_macs(self, args: tuple, output: torch.Tensor, kept: dict[str, int]) -> tuple[int, int]:
        """(dense, kept) multiply-adds of one call: nnz(Â) x feature width, nnz = 2 x edges + N self-loops."""
        h = args[0]
        width, nodes = h.shape[-1], h.shape[0]
        return (2 * self.edge_mask.numel() + nodes) * width, (2 * kept["edge_mask"] + nodes) * width

    def describe_mask_mismatch(self, parameter: str, shape: tuple[int, ...]) -> str | None:
        """Read by `Masks.check`: say 'edges', not just 'shape', when a mask from another graph is applied."""
        if parameter != "edge_mask":
            return None
        return edge_mask_mismatch(shape, self.edge_mask.numel(), self.graph_name)

    def extra_repr(self) -> str:
        return f"graph={self.graph_name!r}, nodes={self.num_nodes}, edges={self.edge_mask.numel()}"
