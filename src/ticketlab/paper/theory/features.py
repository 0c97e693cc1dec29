"""Class-relevant vs class-irrelevant features (Zhang et al., ICLR 2023), batched over trials.

Patterns (per trial, orthonormal rows of a random orthogonal matrix): p+ (row 0), p- (row 1) carry the label;
q_1..q_M (rows 2..M+1) are class-irrelevant (background), equally likely in both classes.

Two-layer network input: P patches per sample. `relevant` of them carry p_y, the others a uniformly random q_m,
and every patch gets Gaussian noise of norm about sigma. Labels are exactly balanced (half +1, half -1).
GNN variant (sample_graph): a synthetic graph whose labelled nodes carry p+ / p- and whose background nodes
carry q_m; a node aggregates `relevant` labelled neighbours (same class with probability `homophily`) and P -
relevant background neighbours. The aggregated neighbour features are the GNN's "patches", so both models share
one network (patchnet.py); what differs is that node features, noise included, are shared between neighbourhoods
and that heterophilous edges (homophily < 1) make labels noisy.
"""

from dataclasses import dataclass

import torch

from ticketlab.errors import TicketlabError
from ticketlab.paper.theory.checks import fraction, nonnegative, positive


@dataclass(frozen=True)
class FeatureTask:
    d: int = 30
    M: int = 8  # class-irrelevant patterns
    P: int = 8  # patches per sample (two-layer net) / neighbours per node (GNN)
    relevant: int = 2  # patches (neighbours) carrying a class-relevant pattern
    sigma: float = 0.0  # noise norm per patch; even 0.02 lets every neuron drift to "good" (docs/theory.md)
    homophily: float = 1.0  # GNN: probability that a relevant neighbour has the node's class

    def check(self) -> None:
        positive("d (input dimension)", self.d)
        positive("P (patches)", self.P)
        if self.M < 0:
            raise TicketlabError(f"M (class-irrelevant patterns) must be >= 0, got {self.M}")
        if self.d < self.M + 2:
            raise TicketlabError(f"M + 2 = {self.M + 2} orthonormal patterns do not fit in d = {self.d} dimensions")
        if not 1 <= self.relevant <= self.P:
            raise TicketlabError(f"relevant must be in 1..P={self.P}, got {self.relevant}")
        if self.M == 0 and self.relevant < self.P:
            raise TicketlabError("M = 0 class-irrelevant patterns needs relevant = P")
        nonnegative("sigma (noise)", self.sigma)
        fraction("homophily", self.homophily)


def make_patterns(trials: int, task: FeatureTask, generator: torch.Generator) -> torch.Tensor:
    """(T, M + 2, d) orthonormal rows: p+, p-, q_1..q_M."""
    q, _ = torch.linalg.qr(torch.randn((trials, task.d, task.M + 2), generator=generator))
    return q.transpose(1, 2)


def balanced_labels(trials: int, N: int, generator: torch.Generator) -> torch.Tensor:
    """(T, N) in {+1, -1}, exactly N//2 of each class (the odd one out is +1), shuffled per trial."""
    base = torch.where(torch.arange(N) < (N + 1) // 2, 1.0, -1.0)
    return base[torch.rand((trials, N), generator=generator).argsort(dim=1)]


def _irrelevant(patterns, shape, task, generator):
    pick = torch.randint(2, task.M + 2, shape, generator=generator) if task.M else torch.zeros(shape, dtype=torch.long)
    return _rows(patterns, pick)


def _rows(patterns: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """patterns (T, R, d) gathered at index (T, ...) -> (T, ..., d)."""
    T, _, d = patterns.shape
    flat = index.reshape(T, -1)
    return torch.gather(patterns, 1, flat.unsqueeze(-1).expand(T, flat.shape[1], d)).reshape(*index.shape, d)


def _noise(shape, task, generator):
    return task.sigma * torch.randn(shape, generator=generator) / task.d**0.5


def sample_patches(patterns, N: int, task: FeatureTask, generator: torch.Generator):
    """Two-layer-network data: X (T, N, P, d), y (T, N), relevant (T, N, P) bool (where p_y sits)."""
    positive("N (training samples)", N)
    T = patterns.shape[0]
    y = balanced_labels(T, N, generator)
    relevant = torch.zeros((T, N, task.P), dtype=torch.bool)
    slots = torch.rand((T, N, task.P), generator=generator).topk(task.relevant, dim=-1).indices
    relevant.scatter_(-1, slots, True)
    cls = torch.where(y > 0, 0, 1).unsqueeze(-1).expand(T, N, task.P)
    X = torch.where(relevant.unsqueeze(-1), _rows(patterns, cls), _irrelevant(patterns, (T, N, task.P), task,
                                                                             generator))
    return X + _noise(X.shape, task, generator), y, relevant


def sample_graph(patterns, N: int, task: FeatureTask, generator: torch.Generator):
    """GNN data on a synthetic graph of 2N nodes: N labelled nodes (balanced classes) and N background nodes.

    Labelled node u carries p_{y_u} (+ noise); background node u carries a random q_m (+ noise). Node v aggregates
    `relevant` neighbours among the labelled nodes (of its own class with probability `homophily`, else of the
    other class) and P - relevant background neighbours; node features (and their noise) are shared by every
    neighbourhood they appear in. Returns the aggregated neighbourhoods X (T, N, P, d), labels y (T, N) and the
    neighbour index (T, N, P) into the 2N nodes."""
    positive("N (nodes)", N)
    if N < 2:
        raise TicketlabError(f"a graph needs at least 2 labelled nodes (one per class), got N={N}")
    T = patterns.shape[0]
    y = balanced_labels(T, N, generator)
    labelled = _rows(patterns, torch.where(y > 0, 0, 1))
    background = _irrelevant(patterns, (T, N), task, generator)
    nodes = torch.cat([labelled, background], dim=1)
    nodes = nodes + _noise(nodes.shape, task, generator)
    same = torch.rand((T, N, task.relevant), generator=generator) < task.homophily
    want = torch.where(same, y.unsqueeze(-1), -y.unsqueeze(-1))  # class of each relevant neighbour
    order = (torch.rand((T, N), generator=generator) + 2.0 * (y < 0)).argsort(dim=1)  # class +1 nodes first
    n_pos = (N + 1) // 2
    rank = (torch.rand((T, N, task.relevant), generator=generator) * torch.where(want > 0, n_pos, N - n_pos)).long()
    relevant = torch.gather(order, 1, torch.where(want > 0, rank, n_pos + rank).reshape(T, -1))
    others = N + torch.randint(N, (T, N, task.P - task.relevant), generator=generator)
    index = torch.cat([relevant.reshape(T, N, task.relevant), others], dim=2)
    return _rows(nodes, index), y, index


def sample_task(model: str, patterns, N: int, task: FeatureTask, generator: torch.Generator):
    """(X, y) for model 'mlp' (two-layer network on patches) or 'gnn' (two-layer GNN on a synthetic graph)."""
    if model == "mlp":
        X, y, _ = sample_patches(patterns, N, task, generator)
    elif model == "gnn":
        X, y, _ = sample_graph(patterns, N, task, generator)
    else:
        from ticketlab.errors import unknown
        raise unknown("model", model, ["mlp", "gnn"])
    return X, y


@dataclass(frozen=True)
class FeatureSettings(FeatureTask):
    """Task + network + training knobs shared by the feature experiments."""

    K: int = 20  # hidden neurons, half with output weight +1, half -1
    init_scale: float = 0.01
    lr: float = 1.0  # times the number of alive neurons
    max_iters: int = 2000
    trials: int = 20

    def task(self) -> FeatureTask:
        return FeatureTask(self.d, self.M, self.P, self.relevant, self.sigma, self.homophily)

    def check_all(self) -> None:
        self.check()
        if not isinstance(self.K, int) or self.K < 2:
            raise TicketlabError(f"K (hidden neurons) must be an integer >= 2 (one per output sign), got {self.K}")
        positive("trials", self.trials)
        positive("max_iters", self.max_iters)
        nonnegative("init_scale", self.init_scale)
        nonnegative("lr", self.lr)


def feature_bytes(trials: int, N: int, P: int, d: int, K: int) -> int:
    """Peak bytes of training on (trials, N, P, d) patches: the patches and ~3 pre-activation-sized tensors."""
    return 4 * trials * N * P * (d + 3 * K)
