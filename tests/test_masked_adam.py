"""The masked Adam kernel's build: a lock left by a killed build does not hang the next one."""

import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from ticketlab import masked_adam


def test_a_stale_build_lock_is_removed_and_the_kernel_loads(tmp_path, monkeypatch):
    if masked_adam.kernel() is None:
        pytest.skip("no C++ compiler here: the kernel is never built")
    from torch.utils.cpp_extension import _get_build_directory

    name = f"ticketlab_masked_adam_{torch.backends.cpu.get_cpu_capability().lower()}"
    built = Path(_get_build_directory(name, verbose=False))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    shutil.copytree(built, tmp_path / name, symlinks=True)  # the finished build, as if this machine had made it
    lock = tmp_path / name / "lock"
    lock.write_text("")
    old = time.time() - masked_adam.STALE_LOCK_SECONDS - 60
    os.utime(lock, (old, old))
    masked_adam.kernel.cache_clear()
    try:
        assert masked_adam.kernel() is not None
        assert not lock.exists()
    finally:
        masked_adam.kernel.cache_clear()
