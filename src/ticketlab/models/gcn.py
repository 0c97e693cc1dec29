"""Graph convolutional networks for node classification on one graph (full batch).

- `gcn`:      Kipf & Welling's 2-layer GCN with 512 hidden units, the Cora model of the unified GNN lottery ticket
              work (Chen et al., ICML 2021): 1433-512-7 on Cora. `gcn16`: the original 16 hidden units.
- `resgcn28`: a deep residual GCN as in DeeperGCN (Li et al. 2020, "res+" blocks: norm, ReLU, dropout, graph
              convolution, addition) with 28 graph convolutions of 128 units, as used by the same ticket work.

The model holds its graph (features and edges as non-persistent buffers) and one `Adjacency` shared by all its
layers, whose `edge_mask` is pruned with the weights. `forward(node_ids)` runs the whole graph and returns the
logits of the requested nodes, so the engine's training loop (batches of node ids) works unchanged. Built without
a graph (`ticketlab models`, `ticketlab count`), a model gets a stand-in of Cora's sizes. docs/graphs.md.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.graph import Adjacency, Graph, cora_shaped
from ticketlab.models.spec import MODELS


def dropout(h: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout from a uniform draw: the same distribution as F.dropout, several times faster on CPU
    for the large feature matrices of a whole graph (F.dropout's Bernoulli sampling dominated a GCN step)."""
    if not training or p == 0.0:
        return h
    return torch.where(torch.rand_like(h) >= p, h / (1.0 - p), torch.zeros((), dtype=h.dtype, device=h.device))


class GraphConv(nn.Module):
    """Â (h W) + b: the feature transform first, so the aggregation runs at the output width."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.xavier_uniform_(self.lin.weight)  # Glorot, as Kipf & Welling

    def forward(self, h: torch.Tensor, adjacency: Adjacency) -> torch.Tensor:
        return adjacency(self.lin(h)) + self.bias


class GraphModel(nn.Module):
    """The graph and its shared adjacency; subclasses define `logits()` for all nodes."""

    input_shape = ()  # one node id
    # ticketlab.core.counting: every forward computes the whole graph, whatever rows it returns
    count_per_forward = True

    def __init__(self, graph: Graph):
        super().__init__()
        self.register_buffer("features", graph.features, persistent=False)
        self.adjacency = Adjacency(graph)

    def forward(self, node_ids: torch.Tensor) -> torch.Tensor:
        return self.logits()[node_ids]

    def example_input(self, batch: int = 2, seed: int = 0) -> torch.Tensor:
        """Node ids to count with (ticketlab.core.counting): any ids give the same work."""
        return torch.arange(min(batch, self.features.shape[0]), device=self.features.device)


class GCN(GraphModel):
    def __init__(self, graph: Graph, num_classes: int, hidden: int = 512, dropout: float = 0.5):
        super().__init__(graph)
        self.drop_rate = dropout
        self.conv1 = GraphConv(graph.num_features, hidden)
        self.conv2 = GraphConv(hidden, num_classes)

    def logits(self) -> torch.Tensor:
        h = dropout(self.features, self.drop_rate, self.training)
        h = dropout(F.relu(self.conv1(h, self.adjacency)), self.drop_rate, self.training)
        return self.conv2(h, self.adjacency)


class ResBlock(nn.Module):
    """DeeperGCN's res+ block: h + conv(dropout(relu(norm(h))))."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(width)
        self.conv = GraphConv(width, width)
        self.drop_rate = dropout

    def forward(self, h: torch.Tensor, adjacency: Adjacency) -> torch.Tensor:
        return h + self.conv(dropout(F.relu(self.norm(h)), self.drop_rate, self.training), adjacency)


class ResGCN(GraphModel):
    def __init__(self, graph: Graph, num_classes: int, layers: int = 28, hidden: int = 128, dropout: float = 0.5):
        super().__init__(graph)
        if layers < 2:
            raise TicketlabError(f"resgcn needs at least 2 graph convolutions, got layers={layers}")
        self.drop_rate = dropout
        self.conv_in = GraphConv(graph.num_features, hidden)
        self.blocks = nn.ModuleList(ResBlock(hidden, dropout) for _ in range(layers - 1))
        self.norm = nn.BatchNorm1d(hidden)
        self.classifier = nn.Linear(hidden, num_classes)

    def logits(self) -> torch.Tensor:
        h = self.conv_in(dropout(self.features, self.drop_rate, self.training), self.adjacency)
        for block in self.blocks:
            h = block(h, self.adjacency)
        return self.classifier(dropout(F.relu(self.norm(h)), self.drop_rate, self.training))


def _need_graph(name: str, graph) -> Graph:
    """The model's graph; without one, a stand-in of Cora's sizes (for listings and counts, not for training:
    the engine always passes the dataset's graph)."""
    if graph is None:
        return cora_shaped()
    if not isinstance(graph, Graph):
        raise TicketlabError(f"model {name!r} option graph must be a ticketlab.models.graph.Graph, "
                             f"got {type(graph).__name__}")
    return graph


@MODELS.register("gcn", input_shape=(), num_classes=7)
def gcn(num_classes: int, graph: Graph | None = None, hidden: int = 512, dropout: float = 0.5):
    """2-layer GCN (Kipf & Welling), 512 hidden: Cora's 1433-512-7 of the unified GNN lottery ticket work."""
    return GCN(_need_graph("gcn", graph), num_classes, hidden, dropout)


@MODELS.register("gcn16", input_shape=(), num_classes=7)
def gcn16(num_classes: int, graph: Graph | None = None, dropout: float = 0.5):
    """2-layer GCN with 16 hidden units, Kipf & Welling's original size (fast on CPU)."""
    return GCN(_need_graph("gcn16", graph), num_classes, 16, dropout)


@MODELS.register("resgcn28", input_shape=(), num_classes=7)
def resgcn28(num_classes: int, graph: Graph | None = None, layers: int = 28, hidden: int = 128,
             dropout: float = 0.5):
    """Deep residual GCN (DeeperGCN res+), 28 graph convolutions of 128 units."""
    return ResGCN(_need_graph("resgcn28", graph), num_classes, layers, hidden, dropout)
