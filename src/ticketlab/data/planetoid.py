"""Cora, Citeseer and PubMed from the Planetoid raw files (Yang et al. 2016) in a user directory.

The files `ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}` come from the data/ folder of the GitHub repository
kimiyoung/planetoid. All but test.index are Python 2 pickles: scipy sparse matrices (features), numpy arrays
(one-hot labels) and a defaultdict(list) (adjacency lists). torch_geometric reads them with plain `pickle.load`,
which runs any callable a file names, so we never use it: a restricted unpickler builds only numpy arrays, plain
containers and inert stand-ins for the sparse matrices, which are turned into tensors here (scipy is not needed).

Layout, as in Kipf & Welling's and torch_geometric's readers: nodes 0..len(allx)-1 are `allx`/`ally`; test node
`test.index[i]` has features tx[i] and label ty[i]; Citeseer's test index has gaps (isolated nodes without
features), which become nodes with zero features and label 0 in no split. The standard split: train = the first
len(y) nodes (20 per class), validation = the next 500, test = the 1,000 test nodes. Features are row-normalised
(each row sums to 1), as in Kipf & Welling. The graph is made undirected, without duplicates or self-loops.
"""

from itertools import chain
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ticketlab.core.files import read_text
from ticketlab.data.planetoid_pickle import SparseState, load_pickle
from ticketlab.data.source import DATASETS, Source
from ticketlab.data.splits import InMemory
from ticketlab.errors import TicketlabError
from ticketlab.models.graph import Graph, undirected_edges

PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")
VAL_NODES = 500
MAX_DENSE = 2**26  # entries of a dense feature or label matrix (PubMed's features: 9.4M)
HOW_TO_GET = "get the Planetoid raw files from the data/ folder of the GitHub repository kimiyoung/planetoid " \
             "and give their directory as data.root (or --root; docs/graphs.md)"


# -- objects -> tensors ---------------------------------------------------------------------------------------------
def _array(value, path: Path, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TicketlabError(f"{path}: {what} is a {type(value).__name__}, expected a numpy array")
    return value


def _shape(state: dict, path: Path) -> tuple[int, int]:
    """The declared 2-d shape, checked before the dense matrix is allocated: sizes >= 0, and at most
    max(2**22, 128 x the file's bytes) entries (the real files need at most ~15 per byte), never above 2**26."""
    shape = state.get("_shape", state.get("shape"))
    if not (isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise TicketlabError(f"{path}: sparse matrix without a 2-d shape of sizes >= 0 (got {shape!r})")
    limit = min(MAX_DENSE, max(2**22, 128 * path.stat().st_size))
    if shape[0] * shape[1] > limit:
        raise TicketlabError(f"{path}: a sparse matrix of shape {shape} is too large for its file ({limit:,} "
                             "entries at most); the file is corrupt")
    return shape


def _from_sparse(m: SparseState, path: Path) -> torch.Tensor:
    try:
        return _dense(m, path)
    except (RuntimeError, ValueError, TypeError, IndexError, OverflowError) as e:
        if isinstance(e, TicketlabError):
            raise
        raise TicketlabError(f"{path}: corrupt {m.layout} matrix ({str(e)[:200]})") from None


def _dense(m: SparseState, path: Path) -> torch.Tensor:
    s, (rows, cols) = m.state, _shape(m.state, path)
    out = torch.zeros(rows, cols, dtype=torch.float32)
    if m.layout in ("csr", "csc"):
        indptr = torch.from_numpy(_array(s.get("indptr"), path, "indptr").astype(np.int64))
        index = torch.from_numpy(_array(s.get("indices"), path, "indices").astype(np.int64))
        outer = torch.repeat_interleave(torch.arange(indptr.numel() - 1), indptr.diff())
        r, c = (outer, index) if m.layout == "csr" else (index, outer)
        data = s.get("data")
    elif m.layout == "coo":
        coords = s.get("coords", (s.get("row"), s.get("col")))
        r, c = (torch.from_numpy(_array(a, path, "coordinates").astype(np.int64)) for a in coords)
        data = s.get("data")
    else:  # lil: per-row lists of column indices and values (object arrays)
        row_lists, value_lists = _array(s.get("rows"), path, "rows"), _array(s.get("data"), path, "data")
        r = torch.repeat_interleave(torch.arange(rows), torch.tensor([len(x) for x in row_lists], dtype=torch.int64))
        c = torch.tensor(list(chain.from_iterable(row_lists)), dtype=torch.int64)
        data = np.asarray(list(chain.from_iterable(value_lists)), dtype=np.float32)
    values = torch.from_numpy(_array(data, path, "data").astype(np.float32))
    if not r.numel() == c.numel() == values.numel():
        raise TicketlabError(f"{path}: corrupt {m.layout} matrix (index and value counts differ)")
    if r.numel() and (int(r.max()) >= rows or int(c.max()) >= cols or int(r.min()) < 0 or int(c.min()) < 0):
        raise TicketlabError(f"{path}: {m.layout} matrix has entries outside its shape {(rows, cols)}")
    return out.index_put_((r, c), values, accumulate=True)


def matrix(path: Path) -> torch.Tensor:
    """A 2-d float32 tensor from a pickled scipy sparse matrix or numpy array."""
    value = load_pickle(path)
    if isinstance(value, SparseState):
        return _from_sparse(value, path)
    array = _array(value, path, "the pickle")
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TicketlabError(f"{path}: expected a 2-d numeric matrix, got {array.dtype} {array.shape}")
    return torch.from_numpy(array.astype(np.float32))


def checked_matrices(paths: dict[str, Path]) -> dict[str, torch.Tensor]:
    """Features x, tx, allx and one-hot labels y, ty, ally: rows that belong together, one width per kind, at least
    one feature and two classes, finite values."""
    t = {part: matrix(paths[part]) for part in ("x", "y", "tx", "ty", "allx", "ally")}
    for a, b in (("x", "y"), ("tx", "ty"), ("allx", "ally")):
        _check_rows(paths, t, a, b)
    for kind, parts, least in (("features", ("x", "tx", "allx"), 1), ("labels", ("y", "ty", "ally"), 2)):
        widths = {t[p].shape[1] for p in parts}
        if len(widths) != 1 or min(widths) < least:
            raise TicketlabError(f"{paths[parts[-1]]}: the {kind} of {', '.join(parts)} have widths "
                                 f"{[t[p].shape[1] for p in parts]}; they must be equal and at least {least}")
    bad = next((p for p in t if not bool(torch.isfinite(t[p]).all())), None)
    if bad:
        raise TicketlabError(f"{paths[bad]} holds NaN or infinite values; the file is corrupt")
    return t


def adjacency_lists(path: Path, num_nodes: int) -> torch.Tensor:
    """(2, M) node pairs from the pickled {node: [neighbours]} mapping."""
    lists = load_pickle(path)
    if not isinstance(lists, dict):
        raise TicketlabError(f"{path}: expected a dict of adjacency lists, got {type(lists).__name__}")
    try:
        sources = torch.tensor(list(lists), dtype=torch.int64)
        counts = torch.tensor([len(v) for v in lists.values()], dtype=torch.int64)
        targets = torch.tensor(list(chain.from_iterable(lists.values())), dtype=torch.int64)
    except (TypeError, ValueError, RuntimeError):
        raise TicketlabError(f"{path}: adjacency lists must map node ids to lists of node ids") from None
    pairs = torch.stack([torch.repeat_interleave(sources, counts), targets])
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= num_nodes):
        raise TicketlabError(f"{path}: the graph names node {int(pairs.max())}, but the files define "
                             f"{num_nodes} nodes")
    return pairs


def read_test_index(path: Path) -> torch.Tensor:
    try:
        return torch.tensor([int(line) for line in read_text(path).split()], dtype=torch.int64)
    except (ValueError, RuntimeError, OverflowError):
        raise TicketlabError(f"{path}: expected one integer node id (a 64-bit integer) per line") from None


# -- the dataset ------------------------------------------------------------------------------------------------------
def files(root: Path, name: str) -> dict[str, Path]:
    """The eight files, in `root` or in `root/data` or `root/planetoid/data` (a clone of the repository)."""
    for folder in (root, root / "data", root / "planetoid" / "data"):
        if (folder / f"ind.{name}.x").is_file():
            root = folder
            break
    paths = {part: root / f"ind.{name}.{part}" for part in PARTS}
    for path in paths.values():
        if not path.is_file():
            raise TicketlabError(f"missing {path} for dataset {name!r}; {HOW_TO_GET}")
    return paths


def _check_rows(paths: dict[str, Path], tensors: dict[str, torch.Tensor], a: str, b: str) -> None:
    if tensors[a].shape[0] != tensors[b].shape[0]:
        raise TicketlabError(f"{paths[a]} has {tensors[a].shape[0]} rows but {paths[b].name} has "
                             f"{tensors[b].shape[0]}; the files do not belong together")


class Planetoid(NamedTuple):
    graph: Graph
    labels: torch.Tensor  # (N,) int64, 0 for nodes without a label
    splits: dict[str, torch.Tensor]  # train, val, test: node ids
    num_classes: int


def read_planetoid(root: Path, name: str) -> Planetoid:
    """Graph, labels and standard split of Planetoid dataset `name` from the files under `root`."""
    paths = files(root, name)
    t = checked_matrices(paths)
    test = read_test_index(paths["test.index"])
    if test.numel() != t["tx"].shape[0]:
        raise TicketlabError(f"{paths['test.index']} lists {test.numel()} nodes but {paths['tx'].name} has "
                             f"{t['tx'].shape[0]} rows")
    n_all = t["allx"].shape[0]
    if test.numel() == 0 or int(test.min()) < n_all or test.unique().numel() != test.numel():
        raise TicketlabError(f"{paths['test.index']}: test nodes must be distinct ids >= {n_all} (the allx rows)")
    if int(test.max()) >= n_all + 2 * test.numel():  # Citeseer's gaps leave 15 ids free for 1,000 test nodes
        raise TicketlabError(f"{paths['test.index']}: test node {int(test.max())} is out of range; with {n_all} "
                             f"allx rows and {test.numel()} test nodes ids stay below {n_all + 2 * test.numel()}")
    num_nodes = int(test.max()) + 1
    features = torch.zeros(num_nodes, t["allx"].shape[1])
    features[:n_all], features[test] = t["allx"], t["tx"]
    onehot = torch.zeros(num_nodes, t["ally"].shape[1])
    onehot[:n_all], onehot[test] = t["ally"], t["ty"]
    features = features / features.sum(dim=1, keepdim=True).clamp(min=1e-12)  # rows sum to 1 (zero rows stay 0)
    pairs = adjacency_lists(paths["graph"], num_nodes)
    n_train = t["y"].shape[0]
    splits = {"train": torch.arange(n_train), "val": torch.arange(n_train, min(n_train + VAL_NODES, n_all)),
              "test": test.sort().values}
    graph = Graph(features, undirected_edges(pairs, num_nodes), name)
    return Planetoid(graph, onehot.argmax(dim=1), splits, onehot.shape[1])


def planetoid_source(root: Path, name: str) -> Source:
    data = read_planetoid(root, name)
    part = {k: InMemory(ids, data.labels[ids]) for k, ids in data.splits.items()}
    return Source(part["train"], part["test"], num_classes=data.num_classes, val_size=len(part["val"]),
                  model_options={"graph": data.graph}, val=part["val"])


@DATASETS.register("cora")
def cora(root: Path) -> Source:
    """Cora citation graph (Planetoid files): 2,708 nodes, 5,278 edges, 1,433 features, 7 classes."""
    return planetoid_source(root, "cora")


@DATASETS.register("citeseer")
def citeseer(root: Path) -> Source:
    """Citeseer citation graph (Planetoid files): 3,327 nodes, 3,703 features, 6 classes."""
    return planetoid_source(root, "citeseer")


@DATASETS.register("pubmed")
def pubmed(root: Path) -> Source:
    """PubMed citation graph (Planetoid files): 19,717 nodes, 500 features, 3 classes."""
    return planetoid_source(root, "pubmed")
