"""Data layer: loaders on files written in the official formats, splits, batches, bundled datasets."""

import gzip
import os
import pickle
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketlab.data import DATASETS, InMemory, Source, batches, load_dataset, stratified_holdout
from ticketlab.data.normalise import CIFAR10_STATS, FASHION_MNIST_STATS, MNIST_STATS
from ticketlab.data.safe_pickle import load_restricted
from ticketlab.errors import TicketlabError

from .conftest import assert_user_error, main_in_process, run_cli, run_clis


@pytest.fixture(autouse=True, scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module: generated data (mnist1d, mnist-mini) is built once, never in ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TICKETLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


# ---- writers of the official formats (also used by test_fetch.py) ----

def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: 0, 0, type 0x08 (ubyte), ndim, big-endian uint32 dims, raw bytes."""
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return bytes([0, 0, 0x08, array.ndim]) + dims + array.astype(np.uint8).tobytes()


def idx_files(n_train=30, n_test=12, seed=0) -> dict[str, bytes]:
    """The four MNIST files (uncompressed contents) with random pixels and labels."""
    rng = np.random.default_rng(seed)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        files[f"{prefix}-images-idx3-ubyte"] = idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        files[f"{prefix}-labels-idx1-ubyte"] = idx_bytes(np.arange(n, dtype=np.uint8) % 10)
    return files


def write_idx_dir(folder, gz=True, **kwargs) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = idx_files(**kwargs)
    for name, data in files.items():
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return files


def cifar_batch(n: int, seed: int, label: str = "training batch") -> bytes:
    """A batch pickled like the official files: protocol 2, bytes keys, uint8 (n, 3072) array."""
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }
    return pickle.dumps(batch, protocol=2)


def cifar_files(n=4) -> dict[str, bytes]:
    files = {f"data_batch_{i}": cifar_batch(n, i) for i in range(1, 6)}
    files["test_batch"] = cifar_batch(n, 99, "testing batch 1 of 1")
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    files["batches.meta"] = pickle.dumps({b"num_cases_per_batch": n, b"label_names": names, b"num_vis": 3072},
                                         protocol=2)
    return files


def write_cifar_dir(folder, n=4) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = cifar_files(n)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def unstandardise(x, stats):
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in stats)
    return ((x * std + mean) * 255).round().to(torch.uint8)


# ---- MNIST / Fashion-MNIST IDX ----

@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_round_trip(tmp_path, gz):
    files = write_idx_dir(tmp_path / "mnist", gz=gz)
    splits = load_dataset("mnist", root=tmp_path, val_size=5)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (25, 5, 12)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert splits.test.x.dtype == torch.float32 and splits.test.y.dtype == torch.int64
    test_pixels = np.frombuffer(files["t10k-images-idx3-ubyte"], np.uint8, offset=16).reshape(12, 1, 28, 28)
    assert torch.equal(unstandardise(splits.test.x, MNIST_STATS), torch.from_numpy(test_pixels.copy()))
    assert splits.test.y.tolist() == [i % 10 for i in range(12)]


def test_fashion_mnist_uses_its_own_statistics_and_root_itself(tmp_path):
    files = write_idx_dir(tmp_path, gz=False)  # files directly in root, no fashion-mnist/ subfolder
    splits = load_dataset("fashion-mnist", root=tmp_path, val_size=0)
    pixels = np.frombuffer(files["t10k-images-idx3-ubyte"], np.uint8, offset=16).reshape(12, 1, 28, 28)
    assert torch.equal(unstandardise(splits.test.x, FASHION_MNIST_STATS), torch.from_numpy(pixels.copy()))
    assert len(splits.val) == 0 and len(splits.train) == 30


def test_torchvision_layout_is_found(tmp_path):
    write_idx_dir(tmp_path / "MNIST" / "raw", gz=True)
    assert len(load_dataset("mnist", root=tmp_path, val_size=3).test) == 12


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_names_the_file(tmp_path, gz):
    write_idx_dir(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    data = path.read_bytes()[:-100]
    path.unlink()
    if gz:
        path = tmp_path / "train-images-idx3-ubyte.gz"
        data = gzip.compress(data)
    path.write_bytes(data)
    with pytest.raises(TicketlabError, match="train-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", root=tmp_path, val_size=1)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    write_idx_dir(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:15])
    with pytest.raises(TicketlabError, match="t10k-labels-idx1-ubyte.gz.*gzip"):
        load_dataset("mnist", root=tmp_path, val_size=1)


def test_bad_magic_number_is_refused(tmp_path):
    write_idx_dir(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x03" + bytes(12))  # images magic
    with pytest.raises(TicketlabError, match="train-labels-idx1-ubyte.*magic"):
        load_dataset("mnist", root=tmp_path, val_size=1)


def test_label_count_mismatch_is_refused(tmp_path):
    write_idx_dir(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(TicketlabError, match="12 images.*5 labels"):
        load_dataset("mnist", root=tmp_path, val_size=1)


def test_missing_files_say_how_to_fetch(tmp_path):
    with pytest.raises(TicketlabError, match=r"missing train-images-idx3-ubyte.*ticketlab data fetch mnist --dir"):
        load_dataset("mnist", root=tmp_path)
    with pytest.raises(TicketlabError, match=r"cifar-10-batches-py.*ticketlab data fetch cifar10 --dir"):
        load_dataset("cifar10", root=tmp_path)


# ---- CIFAR-10 python batches ----

@pytest.mark.parametrize("pass_parent", [True, False])
def test_cifar_batches_load_from_dir_or_parent(tmp_path, pass_parent):
    folder = tmp_path / "cifar-10-batches-py"
    files = write_cifar_dir(folder)
    splits = load_dataset("cifar10", root=tmp_path if pass_parent else folder, val_size=4)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 4, 4)
    assert splits.input_shape == (3, 32, 32)
    official = pickle.loads(files["test_batch"], encoding="bytes")  # our own bytes: safe to load here
    want = torch.from_numpy(official[b"data"]).view(-1, 3, 32, 32)  # rows are R, G, B planes
    assert torch.equal(unstandardise(splits.test.x, CIFAR10_STATS), want)
    assert splits.test.y.tolist() == official[b"labels"]


def test_a_run_holds_out_the_configured_validation_split(tmp_path):
    from ticketlab.engine.lottery import Lottery
    from ticketlab.engine.presets import build_config

    write_cifar_dir(tmp_path / "cifar-10-batches-py")  # 20 training images: too few for the official 5,000
    cfg = build_config("conv6-cifar10", overrides=[f"data.root={tmp_path}", "data.val_size=3"])
    splits = Lottery.open(cfg, tmp_path / "runs").splits
    assert (len(splits.train), len(splits.val)) == (17, 3)
    assert cfg.non_default()["data"]["val_size"] == 3  # part of the run's hash


def test_cifar_pickle_written_by_numpy_1_is_accepted(tmp_path):
    """The real files name numpy.core.multiarray._reconstruct (numpy < 2); numpy 2 writes numpy._core."""
    data = cifar_batch(3, 0)
    assert b"numpy._core.multiarray" in data
    path = tmp_path / "old"
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load_restricted(path)[b"data"].shape == (3, 3072)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_dir(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(marker), b"labels": []}, protocol=2))
    with pytest.raises(TicketlabError, match=r"refusing to load .*test_batch.*forbidden global (posix|nt)\.system"):
        load_dataset("cifar10", root=tmp_path, val_size=1)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps(Evil("/nonexistent/x"), protocol=4),
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"c_codecs\nencode\n(S'x'\nS'zlib'\ntR.",
    b"\x80\x02}q\x00",  # truncated
])
def test_restricted_unpickler_refuses_anything_but_data(tmp_path, payload):
    path = tmp_path / "batch"
    path.write_bytes(payload)
    with pytest.raises(TicketlabError, match="refusing to load"):
        load_restricted(path)


def test_cifar_batch_with_wrong_shape_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_dir(folder)
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(TicketlabError, match=r"data_batch_3.*\(N, 3072\)"):
        load_dataset("cifar10", root=tmp_path, val_size=1)


# ---- splits ----

@DATASETS.register("test-ids")
def ids_dataset(root):
    """200 train and 50 test samples whose single feature is their id; 3 unbalanced classes."""
    ids = torch.arange(250, dtype=torch.float32).view(-1, 1)
    y = torch.tensor([0] * 120 + [1] * 60 + [2] * 20 + [0, 1] * 25)
    return Source(InMemory(ids[:200], y[:200]), InMemory(ids[200:], y[200:]), num_classes=3, val_size=40)


def ids(split) -> set[int]:
    return set(split.x.view(-1).long().tolist())


def test_user_registered_dataset_and_split_invariants():
    splits = load_dataset("test-ids", seed=3)
    assert splits.name == "test-ids" and splits.input_shape == (1,)
    train, val, test = ids(splits.train), ids(splits.val), ids(splits.test)
    assert len(val) == 40 and train | val == set(range(200)) and not train & val
    assert test == set(range(200, 250))  # val is carved from train only; test is untouched
    assert torch.bincount(splits.val.y).tolist() == [24, 12, 4]  # stratified: 20% of every class
    again = load_dataset("test-ids", seed=3)
    assert torch.equal(again.val.x, splits.val.x) and torch.equal(again.train.x, splits.train.x)
    assert ids(load_dataset("test-ids", seed=4).val) != val


def test_bad_split_arguments_are_user_errors():
    with pytest.raises(TicketlabError, match="val size 200.*0..199"):
        load_dataset("test-ids", val_size=200)
    with pytest.raises(TicketlabError, match="val size -1"):
        load_dataset("test-ids", val_size=-1)
    with pytest.raises(TicketlabError, match="seed"):
        load_dataset("test-ids", seed="1")
    with pytest.raises(TicketlabError, match="unknown dataset 'mnist-mni' .did you mean 'mnist-mini'"):
        load_dataset("mnist-mni")


@settings(max_examples=50, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=1, max_size=80), frac=st.floats(0, 1), seed=st.integers(0, 99))
def test_stratified_holdout_partitions(labels, frac, seed):
    y = torch.tensor(labels)
    size = round(frac * len(labels))
    kept, held = stratified_holdout(y, size, torch.Generator().manual_seed(seed))
    assert len(held) == size
    assert torch.equal(torch.cat([kept, held]).sort().values, torch.arange(len(labels)))
    again = stratified_holdout(y, size, torch.Generator().manual_seed(seed))
    assert torch.equal(again[1], held)


@settings(max_examples=30, deadline=None)
@given(per_class=st.integers(1, 30), classes=st.integers(1, 6), frac=st.floats(0, 1))
def test_stratified_holdout_is_proportional_for_balanced_classes(per_class, classes, frac):
    y = torch.arange(classes).repeat(per_class)
    size = round(frac * len(y))
    _, held = stratified_holdout(y, size, torch.Generator().manual_seed(0))
    counts = torch.bincount(y[held], minlength=classes)
    assert int(counts.max() - counts.min()) <= 1


# ---- batches ----

@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), batch_size=st.integers(1, 20), drop_last=st.booleans(), shuffle=st.booleans())
def test_batches_cover_each_sample_once_per_epoch(n, batch_size, drop_last, shuffle):
    data = InMemory(torch.arange(n, dtype=torch.float32).view(-1, 1), torch.arange(n))
    loader = batches(data, batch_size, torch.Generator().manual_seed(0), shuffle=shuffle, drop_last=drop_last)
    seen = [y for _, y in loader]
    assert len(seen) == len(loader)
    assert all(len(y) == batch_size for y in (seen if drop_last else seen[:-1]))
    flat = torch.cat(seen) if seen else torch.empty(0, dtype=torch.int64)
    assert len(set(flat.tolist())) == len(flat) == (n - n % batch_size if drop_last else n)
    assert all(torch.equal(x.view(-1).long(), y) for x, y in loader)  # x and y stay paired
    if not shuffle:
        assert torch.equal(flat, torch.arange(len(flat)))


def test_batches_are_reproducible_and_epochs_differ():
    data = InMemory(torch.randn(100, 3), torch.arange(100))

    def epochs(seed):
        loader = data.batches(16, torch.Generator().manual_seed(seed))
        return [torch.cat([y for _, y in loader]) for _ in range(2)]

    first, second = epochs(7)
    assert all(torch.equal(a, b) for a, b in zip(epochs(7), (first, second), strict=True))
    assert not torch.equal(first, second)
    assert not torch.equal(first, epochs(8)[0])


def test_batches_need_a_generator_and_a_positive_size():
    data = InMemory(torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="Generator"):
        batches(data, 2)
    with pytest.raises(TicketlabError, match="batch size"):
        batches(data, 0, torch.Generator())


# ---- bundled datasets ----

@pytest.mark.parametrize(("name", "sizes", "shape"), [
    ("mnist-mini", (3500, 500, 1000), (1, 28, 28)),
    ("digits", (1257, 180, 360), (1, 8, 8)),
    ("mnist1d", (3500, 500, 1000), (1, 40)),
])
def test_bundled_datasets(name, sizes, shape):
    splits = load_dataset(name)
    assert (len(splits.train), len(splits.val), len(splits.test)) == sizes
    assert splits.input_shape == shape and splits.train.x.shape[1:] == shape and splits.num_classes == 10
    for split in (splits.train, splits.val, splits.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert set(split.y.tolist()) == set(range(10))
    assert abs(splits.train.x.mean().item()) < 0.1 and abs(splits.train.x.std().item() - 1) < 0.1
    rows = torch.cat([splits.train.x, splits.val.x, splits.test.x]).flatten(1)
    assert len(torch.unique(rows, dim=0)) == sum(sizes) - DUPLICATE_ROWS[name]  # the splits are disjoint


DUPLICATE_ROWS = {"mnist-mini": 0, "digits": 0, "mnist1d": 0}  # identical samples in the raw data itself


def test_bundled_test_sets_do_not_depend_on_the_split_seed():
    a, b = load_dataset("mnist-mini", seed=0), load_dataset("mnist-mini", seed=1)
    assert torch.equal(a.test.x, b.test.x) and not torch.equal(a.val.x, b.val.x)
    assert torch.bincount(a.test.y).tolist() == [100] * 10 and torch.bincount(a.val.y).tolist() == [50] * 10


def test_mnist1d_is_cached_and_leaves_global_rngs_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path))
    np.random.seed(123)
    random.seed(123)
    first = load_dataset("mnist1d")
    assert np.random.rand() == np.random.RandomState(123).rand() and random.random() == random.Random(123).random()
    (cached,) = tmp_path.glob("mnist1d-*.safetensors")
    cached.write_bytes(b"garbage")  # a corrupt cache entry is rebuilt, not reported
    again = load_dataset("mnist1d")
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.test.y, again.test.y)
    assert cached.stat().st_size > 1000


def test_cli_info_and_list():
    result, listing = run_clis(["data", "info", "digits", "--seed", "1"], ["data", "list"])  # started together
    assert result.returncode == 0, result.stderr
    assert "digits: train 1,257, val 180, test 360; input (1, 8, 8); 10 classes" in result.stdout
    assert listing.returncode == 0 and "mnist1d" in listing.stdout and "cifar10" in listing.stdout


def test_cli_missing_files_is_a_one_line_error(tmp_path, capsys):
    assert_user_error(run_cli("data", "info", "mnist", "--root", tmp_path), "ticketlab data fetch mnist")
    # the command's other message through its main() in this process (its real command line: above)
    assert_user_error(main_in_process(capsys, "data", "info", "digits", "--val-size", "5000"), "val size 5000")
