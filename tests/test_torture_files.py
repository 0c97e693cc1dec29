"""Files and disks under attack (issue 17): every bad file, full disk and read-only mount is one line and exit 2 (or one
TicketlabError from the API), nothing else changes, and a corrupt checkpoint or summary costs a retrain, not a run.

The CLI cases run in one subprocess (tests/torture_cli.py), one `ticketlab.cli.main` call each."""

import gzip
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab.core.files import save_tensors
from ticketlab.core.masks import FORMAT, Masks
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.presets import build_config

from .conftest import comparable
from .test_data import idx_bytes, idx_files, write_cifar_dir
from .test_graph import write_planetoid

FAST = ["train.steps=40it", "train.eval_every=20it", "train.checkpoint_every=20it", "lottery.levels=1",
        "lottery.baselines=[random_pruning,random_reinit]"]


def fast_config():
    return build_config("mlp-digits", overrides=FAST)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A finished run directory, copied by the tests that damage it."""
    return Lottery.open(fast_config(), tmp_path_factory.mktemp("ref")).run().root


def copy_run(reference, tmp_path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "runs" / reference.name))


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


# ---- the CLI table: setup(tmp) -> (argv, needle) -------------------------------------------------------------------
def mask_file(path: Path, shapes) -> Path:
    save_tensors(path, {"0.weight": torch.zeros(1, dtype=torch.uint8)},
                 metadata={"format": FORMAT, "shapes": json.dumps(shapes)})
    return path


def idx_dir(tmp: Path, images: bytes | None = None, gz: bool = False) -> Path:
    folder = tmp / "mnist"
    folder.mkdir(parents=True)
    for name, data in idx_files().items():
        data = images if images is not None and name == "train-images-idx3-ubyte" else data
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return tmp


class Reduce:
    """A pickle that calls `fn(*args)` on load (refused or bounded by the restricted unpickler)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def cifar_dir(tmp: Path, payload) -> Path:
    folder = tmp / "cifar-10-batches-py"
    write_cifar_dir(folder)
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": payload, b"labels": []}, protocol=2))
    return tmp


def planetoid_dir(tmp: Path, part: str, obj=None, text: str | None = None) -> Path:
    write_planetoid(tmp / "cora")
    path = tmp / "cora" / f"ind.cora.{part}"
    if text is not None:
        path.write_text(text)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    return tmp / "cora"


def sparse_state(shape) -> object:
    import scipy.sparse as sp

    m = sp.csr_matrix(np.ones((2, 2), dtype=np.float32))
    m._shape = shape
    return m


def damaged_run(tmp, rel: str, data: bytes, reference) -> Path:
    run = copy_run(reference, tmp)
    (run / rel).write_bytes(data)
    return run


def cases(reference):
    """(id, setup) pairs; setup(tmp) returns (argv, needle) and may write files under tmp."""
    bad_json = b'{"level": 1, "kind": "imp", "status": "done", "density": "abc"}'
    return [
        ("masks-shapes-list", lambda t: (["count", "lenet300", "--masks", mask_file(t / "m", [1, 2])], "bad shape")),
        ("masks-shapes-negative", lambda t: (["count", "lenet300", "--masks", mask_file(t / "m", {"0.weight": [-8]})],
                                             "bad shape")),
        ("masks-shapes-string", lambda t: (["count", "lenet300", "--masks", mask_file(t / "m", {"0.weight": "ab"})],
                                           "bad shape")),
        ("masks-shapes-huge", lambda t: (["count", "lenet300", "--masks",
                                          mask_file(t / "m", {"0.weight": [2**62, 2**62]})], "bad shape")),
        ("masks-other-model", lambda t: (["count", "lenet300", "--masks", mask_file(t / "m", {"0.weight": [8]})],
                                         "0.weight")),
        ("masks-directory", lambda t: (["count", "lenet300", "--masks", t], "is a directory")),
        ("masks-empty", lambda t: (["count", "lenet300", "--masks", write(t / "m", b"")], "corrupt or truncated")),
        ("masks-random", lambda t: (["count", "lenet300", "--masks", write(t / "m", b"\xff" * 64)], "corrupt")),
        ("metrics-not-utf8", lambda t: (["report", damaged_run(t, "level_01/metrics.jsonl", b"\xff\xfe{}\n",
                                                               reference)], "not UTF-8")),
        ("metrics-middle-line", lambda t: (["report", damaged_run(t, "level_00/metrics.jsonl", b"{\n{}\n",
                                                                  reference)], "corrupt metrics")),
        ("summary-empty-object", lambda t: (["report", damaged_run(t, "level_01/summary.json", b"{}", reference)],
                                            "corrupt summary")),
        ("summary-density-abc", lambda t: (["report", damaged_run(t, "level_01/summary.json", bad_json, reference)],
                                           "'density' is 'abc'")),
        ("summary-not-json", lambda t: (["report", damaged_run(t, "level_00/summary.json", b"{", reference)],
                                        "corrupt JSON")),
        ("summary-list", lambda t: (["report", damaged_run(t, "level_00/summary.json", b"[1]", reference)],
                                    "not a mapping")),
        ("config-directory", lambda t: (["report", config_is_directory(t)], "is a directory")),
        ("report-out-file", lambda t: (["report", reference, "--out", write(t / "f", b"x")], "is a file")),
        ("unfinished-masks-corrupt", lambda t: (["report", unfinished_with_bad_masks(t, reference)], "corrupt")),
        ("export-out-directory", lambda t: (["export", reference, "--out", t], "is a directory")),
        ("export-final-truncated", lambda t: (["export", damaged_run(t, "level_01/final.safetensors", b"\x10\0\0\0",
                                                                     reference), "--out", t / "x.st"], "corrupt")),
        ("export-masks-bad-shapes", lambda t: (["export", export_bad_masks(t, reference), "--out", t / "x.st"],
                                               "bad shape")),
        ("fetch-mirror-not-url", lambda t: (["data", "fetch", "mnist", "--dir", t, "--mirror", "not a url"],
                                            "not a URL")),
        ("fetch-dir-is-file", lambda t: (["data", "fetch", "mnist", "--dir", write(t / "f", b""),
                                          "--mirror", "http://127.0.0.1:9/"], "not a directory")),
        ("idx-zero-samples", lambda t: (["data", "info", "mnist", "--root",
                                         idx_dir(t, idx_bytes(np.zeros((0, 28, 28))))], "no samples")),
        ("idx-5x5", lambda t: (["data", "info", "mnist", "--root", idx_dir(t, idx_bytes(np.zeros((30, 5, 5))))],
                               "5x5")),
        ("idx-gzip-lying-header", lambda t: (["data", "info", "mnist", "--root", idx_dir(t, lying_idx(), gz=True)],
                                             "truncated or corrupt")),
        ("idx-header-beyond-file", lambda t: (["data", "info", "mnist", "--root", idx_dir(t, lying_idx())],
                                              "more than its")),
        ("cifar-bytes-1e14", lambda t: (["data", "info", "cifar10", "--root", cifar_dir(t, Reduce(bytes, 10**14))],
                                        "refusing bytes")),
        ("cifar-ndarray-huge", lambda t: (["data", "info", "cifar10", "--root",
                                           cifar_dir(t, Reduce(np.ndarray, (10**12,)))], "cannot come from")),
        ("planetoid-huge-shape", lambda t: (["data", "info", "cora", "--root",
                                             planetoid_dir(t, "allx", sparse_state((10**6, 10**6)))], "too large")),
        ("planetoid-negative-shape", lambda t: (["data", "info", "cora", "--root",
                                                 planetoid_dir(t, "allx", sparse_state((-5, 2)))], "sizes >= 0")),
        ("planetoid-test-index-range", lambda t: (["data", "info", "cora", "--root",
                                                   planetoid_dir(t, "test.index", text=far_test_index())],
                                                  "out of range")),
        ("planetoid-test-index-overflow", lambda t: (["data", "info", "cora", "--root",
                                                      planetoid_dir(t, "test.index", text="1" * 30 + "\n")],
                                                     "64-bit")),
        ("planetoid-zero-width-labels", lambda t: (["data", "info", "cora", "--root",
                                                    planetoid_dir(t, "ally", np.zeros((30, 0), np.int32))],
                                                   "at least 2")),
        ("planetoid-nan-features", lambda t: (["data", "info", "cora", "--root",
                                               planetoid_dir(t, "x", np.full((6, 8), np.nan, np.float32))],
                                              "NaN")),
    ]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def lying_idx() -> bytes:
    """An image header claiming 200,000 images over a body of 30."""
    return bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (200_000, 28, 28)) + bytes(30 * 784)


def far_test_index() -> str:
    return "".join(f"{i}\n" for i in [*range(30, 41), 10**9])


def config_is_directory(tmp: Path) -> Path:
    run = tmp / "runs" / "r"
    (run / "config.json").mkdir(parents=True)
    return tmp / "runs"


def unfinished_with_bad_masks(tmp, reference) -> Path:
    run = copy_run(reference, tmp)
    (run / "level_01" / "summary.json").unlink()
    (run / "level_01" / "masks.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{}")
    return run


def export_bad_masks(tmp, reference) -> Path:
    run = copy_run(reference, tmp)
    mask_file(run / "level_01" / "masks.safetensors", {"0.weight": "x"})
    return run


def test_cli_table(reference, tmp_path):
    table = cases(reference)
    assert len(table) >= 30
    jobs, before = [], {}
    for name, setup in table:
        folder = tmp_path / name
        folder.mkdir()
        argv, needle = setup(folder)
        jobs.append({"name": name, "argv": [str(a) for a in argv], "needle": needle})
        before[name] = snapshot(folder)
    ref_before = snapshot(reference)
    script = Path(__file__).with_name("torture_cli.py")
    done = subprocess.run([sys.executable, str(script)], input=json.dumps(jobs), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    failures = []
    for job, result in zip(jobs, results, strict=True):
        lines = result["stderr"].strip().splitlines()
        ok = (result["status"] == 2 and len(lines) == 1 and "Traceback" not in result["stderr"]
              and job["needle"] in lines[0])
        if not ok:
            failures.append((job["name"], result))
        elif snapshot(tmp_path / job["name"]) != before[job["name"]]:
            failures.append((job["name"], "files changed"))
    assert not failures, failures
    assert snapshot(reference) == ref_before


def test_mnli_tsv_not_utf8_is_one_line(tmp_path):
    from ticketlab.data.mnli import read_tsv
    from ticketlab.errors import TicketlabError

    path = write(tmp_path / "train.tsv", "sentence1\tsentence2\tgold_label\nà\tb\tneutral\n".encode("latin1"))
    with pytest.raises(TicketlabError, match="not UTF-8") as e:
        read_tsv(path)
    assert "\n" not in str(e.value)


def test_masks_round_trip_still_loads(tmp_path, tiny):
    masks = Masks.ones(tiny)
    masks.save(tmp_path / "m.safetensors")
    assert Masks.load(tmp_path / "m.safetensors") == masks


def test_comparable_of_reference_is_complete(reference):
    assert "level_01/baselines/random_reinit/summary.json" in comparable(reference)
