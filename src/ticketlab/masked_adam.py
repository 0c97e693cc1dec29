"""The masked Adam/AdamW step (csrc/masked_adam.cpp): torch's fused CPU step with the gradient mask applied in the
same pass, the same bits as masking the gradient and then stepping. Built once per machine with torch's C++
extension loader (~20 s, cached in torch's extensions directory, ~/.cache/torch_extensions by default); where it
cannot be built (no C++ compiler, a CPU capability we do not compile for), under another torch than the one whose
kernel it mirrors (TORCH_MIRRORED), or with TICKETLAB_NO_COMPILE=1, `kernel()` is None and masked training masks the
gradients in a separate pass instead."""

import functools
import os
import sys
import time
from pathlib import Path

import torch

SOURCE = Path(__file__).parent / "csrc" / "masked_adam.cpp"

# torch picks its vectorised kernels by the CPU's capability at run time; ours must use the same vector width to
# round alike (torch's own flags for those kernels). Multiply-adds are fused only where the source says so.
CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-DCPU_CAPABILITY_AVX512",
               "-DCPU_CAPABILITY=AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
}
STALE_LOCK_SECONDS = 600  # a build takes ~20 s
TORCH_MIRRORED = "2.13."  # the torch release whose fused Adam the kernel reproduces bit for bit


@functools.cache
def kernel():
    """The compiled extension (its `masked_adam_`), or None where it is not available."""
    flags = CAPABILITY_FLAGS.get(torch.backends.cpu.get_cpu_capability())
    mirrored = torch.__version__.startswith(TORCH_MIRRORED)
    if flags is None or not mirrored or os.environ.get("TICKETLAB_NO_COMPILE") == "1":
        return None
    try:
        from torch.utils.cpp_extension import _get_build_directory, load

        name = f"ticketlab_masked_adam_{torch.backends.cpu.get_cpu_capability().lower()}"
        build = Path(_get_build_directory(name, verbose=False))
        clear_stale_lock(build)
        if not (build / f"{name}.so").exists():
            print("ticketlab: building the masked Adam kernel (once on this machine, ~20 s)", file=sys.stderr)
        return load(name=name, sources=[str(SOURCE)], verbose=False,
                    extra_cflags=["-O3", "-fopenmp", "-ffp-contract=off", *flags], extra_ldflags=["-fopenmp"])
    except Exception:  # no compiler or ninja, a failed build: masked training takes the unfused path (same bits)
        return None


def clear_stale_lock(build: Path) -> None:
    """Remove the lock a killed build left behind: torch's loader would wait for it forever (checked: it does)."""
    lock = build / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
        lock.unlink(missing_ok=True)


def usable(p: torch.Tensor) -> bool:
    """Whether the kernel (Adam/AdamW) can step `p`: a contiguous float32 CPU tensor, and the kernel is built."""
    return p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous() and kernel() is not None
