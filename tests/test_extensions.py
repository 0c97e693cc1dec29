"""Our C++ kernels cannot trip a user: another torch than the one they mirror takes the pure-torch path (said once),
builds are private to the installation and announced, a build killed midway blocks nothing, a failing build falls
back with one line. Builds are faked (`load_library`) except the failing compiler's, which is real and fails fast."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from ticketlab import accel
from ticketlab.accel import build_lock, extensions, masked_adam, torch_mirror
from ticketlab.accel.batching import sparse_linear
from ticketlab.accel.kept_optimizer import KeptOptimizer
from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.data import InMemory, Splits
from ticketlab.engine.accelerator import PURE_TORCH
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.schedule import make_plan
from ticketlab.engine.training import train

from .conftest import Tiny

MIRROR_LINE = ("ticketlab: torch 2.14.0 is not the version our kernels mirror (2.13.x); training takes the pure-torch "
               "path")
BUILT = object()  # what the fake loader returns


@pytest.fixture
def fresh_kernels():
    """Kernels and once-only messages forgotten before and after: the test decides what they see."""
    caches = (masked_adam.kernel, sparse_linear.kernel, torch_mirror.announce, extensions.say)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


@pytest.fixture
def toy(tmp_path, monkeypatch, fresh_kernels):
    """A toy csrc/ and a fake loader that 'builds' (writes the library) where it is missing or `rebuild` is set, and
    fails as torch would hang where torch's own lock file is present."""
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    (csrc / "toy.cpp").write_text("// toy\n")
    (csrc / "toy.h").write_text("// v1\n")
    monkeypatch.setattr(extensions, "CSRC", csrc)
    monkeypatch.setenv("TICKETLAB_KERNELS_DIR", str(tmp_path / "kernels"))
    monkeypatch.delenv("TICKETLAB_NO_COMPILE", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    state = {"rebuild": False, "loads": 0}

    def fake_load(name, source, directory, cflags):
        assert not (directory / "lock").exists(), "torch's loader would wait for this lock forever"
        library = directory / f"{name}.so"
        if state["rebuild"] or not library.exists():
            library.write_bytes(os.urandom(8))
            later = time.time_ns() + state["loads"] * 10**9
            os.utime(library, ns=(later, later))
        state["loads"] += 1
        return BUILT

    monkeypatch.setattr(extensions, "load_library", fake_load)
    return state


def pruned_tiny():
    torch.manual_seed(0)
    model = Tiny()
    return model, prune(model, Masks.ones(model), PruneSpec(rate=0.8, scope="global"))


def tiny_splits():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 1, 6, 6, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + (x[:, 0, 0, 0] > 0).long()
    part = lambda a, b: InMemory(x[a:b], y[a:b])  # noqa: E731
    return Splits(part(0, 80), part(80, 100), part(100, 120), num_classes=3, input_shape=(1, 6, 6), name="tiny")


def train_tiny(stage: Path, accelerator) -> dict[str, torch.Tensor]:
    model, masks = pruned_tiny()
    cfg = TrainConfig(steps="30it", optimizer="adam", lr=1e-2, weight_decay=1e-3, eval_every="15it")
    train(model, masks, tiny_splits(), cfg, make_plan(cfg, 80, 16, 0), stage, accelerator=accelerator)
    for name, mask in masks.items():  # the masked result: pruned weights exactly zero
        assert (dict(model.named_parameters())[name][~mask] == 0).all(), name
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_another_torch_takes_the_pure_torch_path_and_says_so_once(tmp_path, monkeypatch, capsys, fresh_kernels):
    """On the mirrored torch the kernels compact Adam's kept entries (one thread); on a faked 2.14 every kernel
    stands down, one line says so, and training gives the same bits through the pure-torch path."""
    monkeypatch.setenv("TICKETLAB_NO_COMPILE", "1")  # the compaction path alone: no C++ build in this test
    model, masks = pruned_tiny()
    cfg = TrainConfig(optimizer="adam")
    assert KeptOptimizer.for_model(model, masks, cfg).names  # the mirrored torch: kept entries compacted
    expected = train_tiny(tmp_path / "kernels", accel.KERNELS)
    monkeypatch.delenv("TICKETLAB_NO_COMPILE")
    masked_adam.kernel.cache_clear()

    monkeypatch.setattr(torch, "__version__", "2.14.0")
    assert accel.select() is PURE_TORCH
    assert accel.select(enabled=False) is PURE_TORCH
    assert masked_adam.kernel() is None and sparse_linear.kernel() is None
    assert accel.KERNELS.optimizer(model, masks, cfg)[1] == frozenset()  # asked directly: no compaction either
    weights = train_tiny(tmp_path / "pure", accel.select())
    assert all(torch.equal(weights[n].view(torch.int32), expected[n].view(torch.int32)) for n in expected)
    assert capsys.readouterr().err.splitlines() == [MIRROR_LINE]


def test_the_build_directory_is_private_to_the_installation_and_torch(tmp_path, monkeypatch):
    monkeypatch.delenv("TICKETLAB_KERNELS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ours = extensions.build_root()
    monkeypatch.setattr(extensions, "PACKAGE", Path("/another/checkout/src/ticketlab"))
    other_checkout = extensions.build_root()
    monkeypatch.setattr(torch, "__version__", "2.13.1")
    other_torch = extensions.build_root()
    assert len({ours, other_checkout, other_torch}) == 3
    assert all(r.parent == tmp_path / "ticketlab" / "kernels" for r in (ours, other_checkout, other_torch))
    assert "/another/checkout" in (other_checkout / "origin.txt").read_text()


def test_every_build_is_announced(toy, capsys):
    def lines():
        return capsys.readouterr().err.splitlines()

    assert extensions.build("toy", "toy kernel") is BUILT
    first = lines()
    assert len(first) == 1 and "building the toy kernel (first build here" in first[0]
    assert extensions.build("toy", "toy kernel") is BUILT and lines() == []  # up to date: not a word
    (extensions.CSRC / "toy.h").write_text("// v2\n")
    assert extensions.build("toy", "toy kernel") is BUILT
    assert ["sources, flags or torch changed" in line for line in lines()] == [True]
    toy["rebuild"] = True  # torch's loader rebuilds for a reason our stamp does not see: said after the fact
    assert extensions.build("toy", "toy kernel") is BUILT
    assert ["rebuilt the toy kernel" in line for line in lines()] == [True]


def test_a_stale_torch_lock_is_cleared_with_a_message(toy, capsys):
    directory = extensions.build_root() / "ticketlab_toy_avx2"
    directory.mkdir(parents=True)
    (directory / "lock").write_text("")  # left by a build killed midway: torch would wait for it forever
    assert extensions.build("toy", "toy kernel") is BUILT
    assert not (directory / "lock").exists()
    assert "cleared a stale build lock of the toy kernel" in capsys.readouterr().err


HOLD = """import fcntl, pathlib, sys, time
d = pathlib.Path(sys.argv[1])
held = open(d / "ticketlab.lock", "a")
fcntl.flock(held, fcntl.LOCK_EX)
(d / "lock").write_text("")
time.sleep(120)
"""


@pytest.mark.parametrize("held", [0.5, 1.5])
def test_a_build_killed_midway_is_waited_for_then_its_lock_cleared(toy, capsys, monkeypatch, held):
    """Another process holds the build (our lock and torch's); it is killed -9 while we wait: we go on, and say that
    we waited only once the wait is longer than QUIET_WAIT (a process loading the kernel holds the lock briefly)."""
    monkeypatch.setattr(build_lock, "QUIET_WAIT", 1.0)
    directory = extensions.build_root() / "ticketlab_toy_avx2"
    directory.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)])
    try:
        deadline = time.monotonic() + 30
        while not (directory / "lock").exists():
            assert time.monotonic() < deadline and holder.poll() is None, "the holder did not start"
            time.sleep(0.05)
        threading.Timer(held, holder.kill).start()
        started = time.monotonic()
        assert extensions.build("toy", "toy kernel") is BUILT
        assert time.monotonic() - started >= held - 0.1  # it waited for the holder
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert ("waiting for another process building the toy kernel" in err) == (held > build_lock.QUIET_WAIT)
    assert "cleared a stale build lock of the toy kernel" in err


def test_a_failing_compiler_falls_back_to_the_pure_torch_path_with_one_line(tmp_path, monkeypatch, capsys,
                                                                           fresh_kernels):
    """A real build with CXX=/bin/false: no kernel, one line saying so (after the build's announcement), and masked
    training (two threads: where the masked Adam kernel would step) still keeps pruned weights at zero."""
    from torch.utils import cpp_extension

    monkeypatch.setenv("TICKETLAB_KERNELS_DIR", str(tmp_path / "kernels"))
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.delenv("TICKETLAB_NO_COMPILE", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: True)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # KeptOptimizer's rule: the masked kernel, not compaction
    assert masked_adam.kernel() is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "building the masked Adam kernel" in err[0]
    assert "the masked Adam kernel did not build" in err[1] and err[1].endswith("training takes the pure-torch path")
    assert any((tmp_path / "kernels").rglob("build.log"))
    model, masks = pruned_tiny()
    assert KeptOptimizer.for_model(model, masks, TrainConfig(optimizer="adam")).names == frozenset()
    train_tiny(tmp_path / "stage", accel.KERNELS)
    assert masked_adam.kernel() is None and capsys.readouterr().err == ""  # said once
