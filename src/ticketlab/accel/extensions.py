"""Our C++ kernels (csrc/), built once per machine with torch's C++ extension loader (~25 s each, cached in torch's
extensions directory, ~/.cache/torch_extensions by default). Where one cannot be built (no C++ compiler, a CPU
capability we do not compile for) or with TICKETLAB_NO_COMPILE=1, `build` gives None and the callers take their
pure-torch path."""

import os
import sys
import time
from pathlib import Path

import torch

CSRC = Path(__file__).parent / "csrc"

# torch picks its vectorised kernels by the CPU's capability at run time; ours use the same vector width (torch's own
# flags for those kernels), so that the masked Adam kernel rounds as torch's does.
CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-DCPU_CAPABILITY_AVX512",
               "-DCPU_CAPABILITY=AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
}
STALE_LOCK_SECONDS = 600  # a build takes ~25 s


def build(source: str, what: str):
    """The compiled extension of csrc/`source`.cpp, or None where it is not available. Multiply-adds are fused only
    where the source says so (-ffp-contract=off)."""
    capability = torch.backends.cpu.get_cpu_capability()
    flags = CAPABILITY_FLAGS.get(capability)
    if flags is None or os.environ.get("TICKETLAB_NO_COMPILE") == "1":
        return None
    try:
        from torch.utils.cpp_extension import _get_build_directory, load

        name = f"ticketlab_{source}_{capability.lower()}"
        build_dir = Path(_get_build_directory(name, verbose=False))
        clear_stale_lock(build_dir)
        if not (build_dir / f"{name}.so").exists():
            print(f"ticketlab: building the {what} (once on this machine, ~25 s)", file=sys.stderr)
        return load(name=name, sources=[str(CSRC / f"{source}.cpp")], verbose=False,
                    extra_cflags=["-O3", "-fopenmp", "-ffp-contract=off", f"-DTICKETLAB_HEADERS={headers_hash()}",
                                  *flags], extra_ldflags=["-fopenmp"])
    except Exception:  # no compiler or ninja, a failed build: the caller's pure-torch path
        return None


def headers_hash() -> str:
    """A hash of our shared headers (csrc/*.h): torch's loader rebuilds when a source or a flag changes, not when an
    included header does, so their hash goes into the flags."""
    import hashlib

    digest = hashlib.sha256(b"".join(h.read_bytes() for h in sorted(CSRC.glob("*.h"))))
    return digest.hexdigest()[:16]


def clear_stale_lock(build_dir: Path) -> None:
    """Remove the lock a killed build left behind: torch's loader would wait for it forever (checked: it does)."""
    lock = build_dir / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
        lock.unlink(missing_ok=True)
