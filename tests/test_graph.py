"""Graphs: Planetoid raw files, the CSBM generator, GCN aggregation over kept edges, joint edge + weight tickets,
graph MAC counts, the graph presets end to end (with resume and report) and bad input."""

import collections
import json
import math
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ticketlab.core.counting import count
from ticketlab.core.files import read_json
from ticketlab.core.masks import Masks
from ticketlab.core.pruning import kept_after_rounds
from ticketlab.data import load_dataset
from ticketlab.data.csbm import edge_probabilities, make_csbm
from ticketlab.data.planetoid import read_planetoid
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.presets import build_config
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model
from ticketlab.models.graph import Graph, undirected_edges
from ticketlab.report import load_runs, summary_table

from .conftest import assert_user_error, file_stamps, main_in_process, run_cli, run_clis

CLASSES, FEATURES, PER_CLASS, N_ALL, N_TEST = 3, 8, 2, 30, 12
SMOKE = ["train.steps=3it", "train.eval_every=1it", "train.checkpoint_every=2it", "lottery.levels=2"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny graphs are all overhead: one thread is faster, and immune to OpenMP stalls on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # for the CLI subprocesses
        yield
    torch.set_num_threads(threads)


# ---- a tiny Planetoid dataset in the exact official format ----------------------------------------------------------
def onehot(labels: np.ndarray) -> np.ndarray:
    return np.eye(CLASSES, dtype=np.int32)[labels]


def write_planetoid(folder, name="cora", test_ids=None, seed=0) -> dict:
    """ind.<name>.{x,y,tx,ty,allx,ally,graph} pickled with protocol 2 (scipy csr/lil, numpy one-hot labels,
    defaultdict(list) adjacency) and ind.<name>.test.index as text, in a shuffled order as in the real files."""
    rng = np.random.default_rng(seed)
    test_ids = np.array(test_ids if test_ids is not None else rng.permutation(np.arange(N_ALL, N_ALL + N_TEST)))
    num_nodes = int(test_ids.max()) + 1
    features = (rng.random((num_nodes, FEATURES)) < 0.4).astype(np.float32)
    features[:, 0] = 1.0  # no empty rows
    labels = rng.integers(0, CLASSES, num_nodes)
    labels[: CLASSES * PER_CLASS] = np.repeat(np.arange(CLASSES), PER_CLASS)
    adjacency = collections.defaultdict(list)
    for u, v in rng.integers(0, num_nodes, (40, 2)):
        adjacency[int(u)].append(int(v))  # one direction only, duplicates and self-loops possible
    adjacency[3] += [3, 5, 5]
    adjacency[5].append(3)
    objects = {
        "x": sp.csr_matrix(features[: CLASSES * PER_CLASS]), "y": onehot(labels[: CLASSES * PER_CLASS]),
        "allx": sp.lil_matrix(features[:N_ALL]), "ally": onehot(labels[:N_ALL]),
        "tx": sp.csr_matrix(features[test_ids]), "ty": onehot(labels[test_ids]), "graph": adjacency,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for part, obj in objects.items():
        (folder / f"ind.{name}.{part}").write_bytes(pickle.dumps(obj, protocol=2))
    (folder / f"ind.{name}.test.index").write_text("".join(f"{i}\n" for i in test_ids))
    pairs = [(min(u, v), max(u, v)) for u, vs in adjacency.items() for v in vs if u != v]
    return {"features": features, "labels": labels, "test_ids": test_ids, "edges": sorted(set(pairs))}


@pytest.fixture(scope="module")
def cora_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planetoid")
    return folder, write_planetoid(folder)


@pytest.fixture(scope="module")
def csbm():
    return load_dataset("csbm")


def tiny_graph() -> Graph:
    features = torch.arange(20, dtype=torch.float32).reshape(4, 5) / 10
    return Graph.from_pairs(features, torch.tensor([[0, 1, 2, 1], [1, 2, 3, 0]]), "tiny")  # path 0-1-2-3


# ---- Planetoid ------------------------------------------------------------------------------------------------------
def test_planetoid_reader_follows_the_official_layout(cora_dir):
    folder, truth = cora_dir
    data = read_planetoid(folder, "cora")
    test_ids = torch.from_numpy(truth["test_ids"])
    rows = torch.from_numpy(truth["features"])
    assert data.graph.num_nodes == N_ALL + N_TEST and data.num_classes == CLASSES
    assert torch.allclose(data.graph.features, rows / rows.sum(1, keepdim=True))  # row-normalised, test rows placed
    assert torch.equal(data.labels, torch.from_numpy(truth["labels"]))
    assert data.splits["train"].tolist() == list(range(CLASSES * PER_CLASS))
    assert data.splits["val"].tolist() == list(range(CLASSES * PER_CLASS, N_ALL))  # at most 500, from allx
    assert torch.equal(data.splits["test"], test_ids.sort().values)
    assert [tuple(e) for e in data.graph.edges.T.tolist()] == truth["edges"]  # undirected, no self-loop or duplicate


def test_planetoid_dataset_and_citeseer_gaps(tmp_path):
    write_planetoid(tmp_path, "citeseer", test_ids=[33, 30, 35, 31])  # nodes 32 and 34 isolated: no features
    splits = load_dataset("citeseer", root=tmp_path)
    graph = splits.model_options["graph"]
    assert splits.sizes() == {"train": 6, "val": 24, "test": 4} and splits.val.x.tolist() == list(range(6, 30))
    assert graph.num_nodes == 36 and (graph.features[[32, 34]] == 0).all()
    assert splits.input_shape == () and splits.train.x.dtype == torch.int64
    with pytest.raises(TicketlabError, match="fixed validation split of 24"):
        load_dataset("citeseer", root=tmp_path, val_size=10)


def test_planetoid_old_module_paths_and_forbidden_globals(tmp_path):
    write_planetoid(tmp_path)
    for part in ("x", "allx", "tx"):  # files written by old scipy / numpy name the public module paths
        path = tmp_path / f"ind.cora.{part}"
        path.write_bytes(path.read_bytes().replace(b"scipy.sparse._", b"scipy.sparse.")
                         .replace(b"numpy._core", b"numpy.core"))
    assert read_planetoid(tmp_path, "cora").graph.num_nodes == N_ALL + N_TEST
    (tmp_path / "ind.cora.graph").write_bytes(b"cos\nsystem\n(S'echo owned'\ntR.")
    with pytest.raises(TicketlabError, match="forbidden global os.system"):
        read_planetoid(tmp_path, "cora")


def test_missing_planetoid_file_is_named_with_how_to_get_it(tmp_path, capsys):
    write_planetoid(tmp_path)
    (tmp_path / "ind.cora.ally").unlink()
    with pytest.raises(TicketlabError, match=r"missing .*ind\.cora\.ally .*kimiyoung/planetoid"):
        load_dataset("cora", root=tmp_path)
    # through `run`'s main() in this process (its real command line's errors: test_lottery.py)
    result = main_in_process(capsys, "run", "gcn-cora", "--runs-dir", tmp_path / "runs", "--set",
                             f"data.root={tmp_path / 'none'}")
    assert_user_error(result, "ind.cora.x", "kimiyoung/planetoid")


# ---- CSBM -----------------------------------------------------------------------------------------------------------
def test_csbm_statistics():
    n, c, p_in, p_out = 600, 3, 0.05, 0.005
    graph, labels = make_csbm(n, c, 40, p_in, p_out, signal=3.0, seed=1)
    assert torch.bincount(labels).tolist() == [200, 200, 200]
    u, v = graph.edges
    same = labels[u] == labels[v]
    pairs_in, pairs_out = c * 200 * 199 / 2, 200 * 200 * c * (c - 1) / 2
    for found, pairs, p in ((int(same.sum()), pairs_in, p_in), (int((~same).sum()), pairs_out, p_out)):
        assert abs(found - pairs * p) < 5 * math.sqrt(pairs * p * (1 - p))  # binomial, 5 sigma
    means = torch.stack([graph.features[labels == k].mean(0) for k in range(c)])
    assert torch.allclose(means.norm(dim=1), torch.full((c,), 3.0), atol=0.5)  # class means of norm `signal`
    assert (graph.features - means[labels]).std().item() == pytest.approx(1.0, abs=0.05)  # unit noise
    again, _ = make_csbm(n, c, 40, p_in, p_out, signal=3.0, seed=1)
    assert torch.equal(again.edges, graph.edges) and torch.equal(again.features, graph.features)


def test_csbm_dataset_is_cora_sized(csbm):
    graph = csbm.model_options["graph"]
    assert (graph.num_nodes, graph.num_features, csbm.num_classes) == (2708, 1433, 7)
    p_in, p_out = edge_probabilities(2708, 7, 2 * 5278 / 2708, 0.81)
    assert abs(graph.num_edges - 5278) < 5 * math.sqrt(5278)
    labels = torch.zeros(2708, dtype=torch.int64)
    for split in (csbm.train, csbm.val, csbm.test):
        labels[split.x] = split.y
    assert csbm.sizes() == {"train": 140, "val": 500, "test": 1000}
    assert torch.bincount(csbm.train.y).tolist() == [20] * 7
    ids = torch.cat([csbm.train.x, csbm.val.x, csbm.test.x])
    assert ids.unique().numel() == 1640  # disjoint
    assert 0 < p_out < p_in < 1


# ---- aggregation over kept edges ------------------------------------------------------------------------------------
def test_undirected_edges_are_canonical():
    edges = undirected_edges(torch.tensor([[2, 0, 1, 1, 3], [0, 2, 1, 0, 3]]), 4)
    assert edges.tolist() == [[0, 0], [1, 2]]


def test_adjacency_is_kipf_welling_normalisation_with_self_loops():
    graph = tiny_graph()
    model = build_model("gcn16", num_classes=2, graph=graph)
    a = torch.zeros(4, 4)
    a[graph.edges[0], graph.edges[1]] = 1
    a = a + a.T + torch.eye(4)
    d = a.sum(1).rsqrt()
    assert torch.allclose(model.adjacency.dense(), d[:, None] * a * d[None, :])
    with torch.no_grad():
        model.adjacency.edge_mask.zero_()  # every edge pruned: only the self-loops remain, weight 1
    assert torch.equal(model.adjacency.dense(), torch.eye(4))


def test_pruned_edges_are_absent_and_adjacency_stays_symmetric():
    graph = load_dataset("csbm").model_options["graph"]
    small = Graph(graph.features[:300, :16].contiguous(), graph.edges[:, (graph.edges < 300).all(0)], "part")
    model = build_model("gcn16", num_classes=7, graph=small, seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    keep = torch.rand(small.num_edges, generator=generator) < 0.5
    with torch.no_grad():
        model.adjacency.edge_mask.copy_(torch.rand(small.num_edges, generator=generator) + 0.5)
    Masks({"adjacency.edge_mask": keep}).apply(model)
    dense = model.adjacency.dense()
    assert torch.equal(dense, dense.T)
    # The same network on a graph that never had the pruned edges gives the same output.
    without = build_model("gcn16", num_classes=7, graph=small.keep_edges(keep), seed=0).eval()
    state = {k: v for k, v in model.state_dict().items() if k != "adjacency.edge_mask"}
    without.load_state_dict({**state, "adjacency.edge_mask": model.adjacency.edge_mask.detach()[keep]})
    nodes = torch.arange(300)
    assert torch.allclose(model(nodes), without(nodes), atol=1e-6)
    # Perturbing a node joined to v only by pruned edges leaves v unchanged; gradients of pruned edges are 0.
    kept_nodes = set(small.edges[:, keep].flatten().tolist())
    u, v = next((u, v) for u, v in small.edges[:, ~keep].T.tolist() if u not in kept_nodes and v not in kept_nodes)
    before = model(nodes)
    model.features[u] += 100.0
    after = model(nodes)
    model.features[u] -= 100.0
    assert torch.equal(before[v], after[v]) and not torch.equal(before[u], after[u])
    model(nodes).sum().backward()
    assert (model.adjacency.edge_mask.grad[~keep] == 0).all() and model.adjacency.edge_mask.grad[keep].any()


# ---- joint edge + weight tickets ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def csbm_run(tmp_path_factory):
    cfg = build_config("gcn-csbm", overrides=SMOKE)
    lottery = Lottery.open(cfg, tmp_path_factory.mktemp("runs"), "gcn-csbm")
    lottery.run()
    return lottery


def test_dropout_model_runs_are_reproducible(csbm_run, tmp_path):
    """GCN trains with dropout: the same seed and config give the same numbers (dropout draws are seeded per step)."""
    again = Lottery.open(csbm_run.cfg, tmp_path, "gcn-csbm").run()

    def results(root):
        return {p.relative_to(root): {k: v for k, v in read_json(p).items() if k != "wall"}
                for p in root.rglob("summary.json")}

    assert results(again.root) == results(csbm_run.store.root)


def test_exact_edge_and_weight_counts_per_round(csbm_run):
    store, edges = csbm_run.store, csbm_run.splits.model_options["graph"].num_edges
    weights = 1433 * 16 + 16 * 7
    for level in range(3):
        masks = Masks.load(store.level(level) / "masks.safetensors")
        kept = masks.kept()
        assert kept["adjacency.edge_mask"] == kept_after_rounds(edges, 0.05, level)
        assert kept["conv1.lin.weight"] + kept["conv2.lin.weight"] == kept_after_rounds(weights, 0.2, level)
        if level:  # the random-pruning baseline: the same edge and weight counts, other edges
            random = Masks.load(store.baseline(level, "random_pruning") / "masks.safetensors")
            edge_masks = random["adjacency.edge_mask"], masks["adjacency.edge_mask"]
            assert random.kept() == kept and not torch.equal(*edge_masks)


def test_pruned_edges_stay_zero_and_rewind_restores_kept_edges(csbm_run):
    from ticketlab.core.files import load_tensors

    store = csbm_run.store
    masks = Masks.load(store.level(2) / "masks.safetensors")
    final = load_tensors(store.level(2) / "final.safetensors")[0]["adjacency.edge_mask"]
    assert (final[~masks["adjacency.edge_mask"]] == 0).all()
    model, _, _ = csbm_run.start_point(2)
    masks.apply(model)
    start = model.adjacency.edge_mask.detach()
    assert torch.equal(start, masks["adjacency.edge_mask"].float())  # rewound: kept edges back to 1
    summary = json.loads((store.level(2) / "summary.json").read_text())
    assert summary["layer_density"]["adjacency.edge_mask"] == pytest.approx(masks.densities()["adjacency.edge_mask"])


# ---- counting -------------------------------------------------------------------------------------------------------
def test_graph_macs_by_hand():
    graph = tiny_graph()  # 4 nodes, 3 undirected edges, 5 features
    model = build_model("gcn16", num_classes=2, graph=graph)
    counts = count(model)
    # conv1: 4 nodes x 5 x 16; aggregation at width 16: (2 x 3 edges + 4 self-loops) x 16, twice per forward
    # (conv1 at 16, conv2 at 2); conv2: 4 x 16 x 2.
    assert counts.layer("conv1.lin").macs_dense == 4 * 5 * 16
    assert counts.layer("conv2.lin").macs_dense == 4 * 16 * 2
    assert counts.layer("adjacency").macs_dense == (2 * 3 + 4) * 16 + (2 * 3 + 4) * 2
    assert counts.macs_dense == 320 + 128 + 180
    masks = Masks.ones(model)
    masks = Masks({**masks, "adjacency.edge_mask": torch.tensor([True, False, True]),
                   "conv2.lin.weight": torch.arange(32).reshape(2, 16) < 8})
    sparse = count(model, masks)
    assert sparse.layer("adjacency").macs_weight_sparse == (2 * 2 + 4) * 16 + (2 * 2 + 4) * 2
    assert sparse.layer("conv2.lin").macs_weight_sparse == 4 * 8
    assert sparse.layer("adjacency").prunable_kept == 2 and any("whole graph" in n for n in sparse.notes)


def test_models_without_a_graph_count_with_coras_sizes():
    counts = count(build_model("gcn"))
    assert counts.params == 1433 * 512 + 512 + 512 * 7 + 7 + 5278
    assert counts.layer("conv1.lin").macs_dense == 2708 * 1433 * 512
    assert counts.layer("adjacency").macs_dense == (2 * 5278 + 2708) * (512 + 7)
    assert sum(p.numel() for p in build_model("resgcn28", device="meta").parameters()) > 27 * 128 * 128


# ---- presets end to end ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["gcn-csbm", "gcn-cora", "resgcn28-cora"])
def test_preset_smoke_resume_and_report(preset, cora_dir, csbm_run, tmp_path):
    if preset == "gcn-csbm":  # already run by the fixture, at the same smoke size
        lottery = csbm_run
    else:
        cfg = build_config(preset, overrides=[*SMOKE, f"data.root={cora_dir[0]}", "lottery.levels=1"])
        lottery = Lottery.open(cfg, tmp_path, preset)
        lottery.run()
    store = lottery.store
    masks = Masks.load(store.level(1) / "masks.safetensors")
    edges = lottery.splits.model_options["graph"].num_edges
    assert masks.kept()["adjacency.edge_mask"] == kept_after_rounds(edges, 0.05, 1)
    if preset == "resgcn28-cora":
        assert len([n for n in masks if n.endswith("lin.weight")]) == 28
    before = file_stamps(store.root)
    Lottery.open(lottery.cfg, store.root.parent, preset).run()  # resume of a finished run: trains nothing
    assert file_stamps(store.root) == before
    table = summary_table(load_runs(store.root))
    assert f"on {lottery.cfg.data.name} (preset {preset})" in table and "random pruning (level 1)" in table
    if preset != "gcn-csbm":
        assert "paper (%)" in table  # the talk's Table 2 figures beside ours


def test_gcn_cora_preset_cli_run_resume_and_report(cora_dir, tmp_path):
    folder, _ = cora_dir
    args = ["run", "gcn-cora", "--runs-dir", tmp_path, *[x for o in [*SMOKE, f"data.root={folder}"]
                                                           for x in ("--set", o)]]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    run_dir = next(tmp_path.glob("gcn-cora-*"))
    stamps = file_stamps(run_dir)
    second, report = run_clis(args, ["report", tmp_path])  # both only read the run
    assert second.returncode == 0, second.stderr
    assert stamps == file_stamps(run_dir)  # trained nothing
    assert report.returncode == 0, report.stderr
    assert "gcn on cora" in report.stdout and "81.88" in report.stdout  # the talk's figure beside ours


# ---- bad input ------------------------------------------------------------------------------------------------------
def test_edge_mask_of_another_graph_names_both_counts(cora_dir, csbm):
    small = read_planetoid(cora_dir[0], "cora").graph
    model = build_model("gcn16", num_classes=3, graph=small)
    other = Masks.ones(build_model("gcn16", num_classes=3, graph=csbm.model_options["graph"]))
    foreign = Masks({"adjacency.edge_mask": other["adjacency.edge_mask"]})
    e_big, e_small = foreign["adjacency.edge_mask"].numel(), small.num_edges
    with pytest.raises(TicketlabError, match=f"edge mask has {e_big:,} entries but graph 'cora' has {e_small} "):
        foreign.apply(model)
    with pytest.raises(TicketlabError, match=f"has {e_small} undirected edges"):
        small.keep_edges(torch.ones(e_small + 1, dtype=torch.bool))
