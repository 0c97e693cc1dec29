"""Batched convolutional tickets: convolutions keeping little train as their kept entries (sparse_conv.py), in plain
convnets and in models beyond nn.Sequential (stacked_modules.py: residual blocks, batch norm with each copy's own
statistics); killed with SIGKILL mid-run, a group resumes to the files of its uninterrupted run."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ticketlab.accel.batching import train_batched
from ticketlab.core.files import load_tensors
from ticketlab.engine.config import TrainConfig

from .test_batched import SPARSE_RATES, check_against_separate_runs, close, tickets_for, without_wall

ROOT = Path(__file__).resolve().parents[1]
CFG = TrainConfig(steps="40it", optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, eval_every="10it",
                  checkpoint_every="4it")
WORKER = """
import sys
from pathlib import Path
from tests.test_batched_conv import CFG
from ticketlab.accel.batching import train_batched
from tests.test_batched_conv import resnet_tickets
train_batched(resnet_tickets(Path(sys.argv[1])), CFG)
"""


def resnet_tickets(root: Path) -> list:
    """Two residual copies keeping 20% and 15% of every layer: their convolutions train as kept entries where the
    kernel is built."""
    return tickets_for("resnet", root, CFG, k=2, rates=SPARSE_RATES, scope="layer")


def finished_files(root: Path) -> list:
    """Every copy's metric rows (but wall time) and final weights and statistics."""
    out = []
    for stage in sorted(root.glob("copy*")):
        rows = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
        tensors = load_tensors(stage / "checkpoint.safetensors")[0]  # but the process's RNG: batches are by step
        out.append((without_wall(rows), {n: t for n, t in tensors.items() if not n.startswith("rng.")}))
    return out


def same(a: list, b: list) -> bool:
    return all(ra == rb and ta.keys() == tb.keys() and all(torch.equal(ta[n], tb[n]) for n in ta)
               for (ra, ta), (rb, tb) in zip(a, b, strict=True))


def test_a_residual_group_killed_mid_run_resumes_to_its_uninterrupted_files(tmp_path):
    """Batch norm statistics, sparse convolutions' kept values and their optimizer state all resume exactly."""
    train_batched(resnet_tickets(tmp_path / "reference"), CFG)
    expected = finished_files(tmp_path / "reference")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(killed)], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    deadline = time.time() + 120
    while not list(killed.glob("copy1/checkpoint.safetensors")) and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = (killed / "copy0" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["step"] < 40, "killed too late to test a resume"
    train_batched(resnet_tickets(killed), CFG)
    assert same(finished_files(killed), expected)


def sparse_conv_kernel_or_fail():
    """The sparse convolution kernel, or a skip where no C++ compiler is; a failure where it should have built."""
    import shutil

    from ticketlab.accel.batching.sparse_conv import kernel

    if shutil.which("c++") and os.environ.get("TICKETLAB_NO_COMPILE") != "1" and kernel() is None:
        pytest.fail("a C++ compiler is here but the sparse convolution kernel did not build")
    if kernel() is None:
        pytest.skip("no C++ compiler: the sparse convolution kernel cannot be built here")


@pytest.mark.parametrize("name,optimizer", [("conv2", "adam"), ("resnet", "sgd")])
def test_sparse_convolutions_match_separate_runs(tmp_path, name, optimizer):
    """Copies keeping 20%..10% of every layer (layer-wise): their convolutions train as kept entries, with the
    numbers of separate dense runs up to rounding (another summation order): metrics within 1e-5, weights within 1e-5
    but for a few where Adam flips the step of a near-zero gradient (`close`)."""
    from ticketlab.accel.batching.sparse_conv import SparseConvWeight
    from ticketlab.accel.batching.trainer import BatchedRun

    sparse_conv_kernel_or_fail()
    cfg = TrainConfig(steps="24it", optimizer=optimizer)
    probe = BatchedRun(tickets_for(name, tmp_path / "probe", cfg, k=2, rates=SPARSE_RATES, scope="layer"), cfg, None)
    assert any(isinstance(w, SparseConvWeight) for w in probe.model.sparse.values())
    check_against_separate_runs(tmp_path, name, optimizer, close, rates=SPARSE_RATES, scope="layer")


@pytest.mark.parametrize("shared_data", [False, True])
def test_sparse_convolutional_copies_evaluate_together_as_each_alone(tmp_path, monkeypatch, shared_data):
    """Copies whose convolutions train sparse are evaluated all at once through the kernels (each on its own data, or
    one input shared; chunks of 5 rows of each here): each copy's loss within 1e-5 of Task.evaluate on its own dense
    model, its accuracy within one sample."""
    from ticketlab.accel.batching import evaluation
    from ticketlab.accel.batching.sparse_conv import SparseConvWeight
    from ticketlab.accel.batching.trainer import BatchedRun
    from ticketlab.engine.task import Task

    sparse_conv_kernel_or_fail()
    monkeypatch.setattr(evaluation, "EVAL_BATCH", 10)
    cfg = TrainConfig(steps="4it")
    tickets = tickets_for("conv2", tmp_path, cfg, k=2, rates=SPARSE_RATES, scope="layer", shared_data=shared_data)
    run = BatchedRun(tickets, cfg, None)
    assert any(isinstance(w, SparseConvWeight) for w in run.model.sparse.values())
    val, test = run.evaluate()
    for k, t in enumerate(tickets):
        model = run.model.write_to(k, t.model)
        for (loss, acc), split in ((val[k], t.splits.val), (test[k], t.splits.test)):
            alone_loss, alone_acc = Task().evaluate(model, split)
            assert loss == pytest.approx(alone_loss, abs=1e-5)
            assert abs(acc - alone_acc) <= 1 / len(split)


def test_convolutional_copies_batch_only_where_their_convolutions_train_sparse(tmp_path):
    """Dense convolutions gain nothing from batching (they run copy by copy) and lose to the stacking's copies: such
    copies train one after another. Residual networks with batch norm batch once their convolutions train sparse;
    Linear-only models always batch."""
    from ticketlab.accel import KERNELS, PURE_TORCH

    sparse_conv_kernel_or_fail()
    cfg = TrainConfig(steps="4it")
    lightly_pruned = tickets_for("conv2", tmp_path / "a", cfg, k=2)  # global 30-50%: the convolutions keep ~all
    sparse = tickets_for("conv2", tmp_path / "b", cfg, k=2, rates=SPARSE_RATES, scope="layer")
    assert not KERNELS.worth_batching(lightly_pruned)
    assert KERNELS.worth_batching(sparse)
    assert KERNELS.worth_batching(tickets_for("mlp", tmp_path / "c", cfg, k=2))
    assert KERNELS.worth_batching(tickets_for("resnet", tmp_path / "d", cfg, k=2, rates=SPARSE_RATES, scope="layer"))
    assert not KERNELS.worth_batching(tickets_for("resnet", tmp_path / "e", cfg, k=2))
    assert PURE_TORCH.worth_batching(lightly_pruned)  # the base class: whatever `batchable` allowed


def test_copies_batch_only_if_their_activations_fit_in_half_the_available_memory(tmp_path, monkeypatch):
    """K copies' activations live at once: the group batches only if K times what one copy's forward pass saves for
    backward fits in half the memory available; measuring it leaves the model's batch norm statistics and modes as
    they were."""
    from ticketlab.accel.batching import worth

    cfg = TrainConfig(steps="4it")
    tickets = tickets_for("resnet", tmp_path, cfg, k=2, rates=SPARSE_RATES, scope="layer")
    model = tickets[0].model
    modes = {name: m.training for name, m in model.named_modules()}
    before = {name: b.clone() for name, b in model.named_buffers()}
    saved = worth.saved_bytes(tickets[0])
    batch, pixels = tickets[0].plan.batch_size, math.prod(tickets[0].splits.input_shape)
    assert saved >= 4 * batch * pixels  # the input, at least, is saved (by the first convolution)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(b, before[name]) for name, b in model.named_buffers())
    monkeypatch.setattr(worth, "available_memory", lambda: 4 * saved)  # 2 copies need 2x, half of 4x: fits
    assert worth.fits_in_memory(tickets)
    monkeypatch.setattr(worth, "available_memory", lambda: 4 * saved - 1)
    assert not worth.fits_in_memory(tickets)
    assert worth.available_memory() > 0
