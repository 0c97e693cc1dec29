"""Our C++ kernels (csrc/), compiled by torch's C++ extension loader into a build directory private to this
installation (`build_root`), the first time one is needed and again whenever its sources, flags or torch change
(each build announced on stderr: 0.5-3 min). Where one cannot be built (another torch than the one they mirror, no
ninja or C++ compiler, a CPU capability we do not compile for, a failed build) `build` gives None, says why in one
line, and the callers take their pure-torch path; TICKETLAB_NO_COMPILE=1 skips them without a word."""

import functools
import hashlib
import os
import sys
import time
from pathlib import Path

import torch

from ticketlab.accel.build_lock import build_lock
from ticketlab.accel.torch_mirror import mirrors_torch

CSRC = Path(__file__).parent / "csrc"
PACKAGE = Path(__file__).resolve().parents[1]  # this installation's ticketlab (a checkout's src/ticketlab)

# torch picks its vectorised kernels by the CPU's capability at run time; ours use the same vector width (torch's own
# flags for those kernels), so that the masked Adam kernel rounds as torch's does.
CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-DCPU_CAPABILITY_AVX512",
               "-DCPU_CAPABILITY=AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
}
LDFLAGS = ("-fopenmp",)  # torch's loader appends to the lists it is given: each call gets copies
PURE = "training takes the pure-torch path"


def build(source: str, what: str):
    """The compiled extension of csrc/`source`.cpp, or None where it is not available. Multiply-adds are fused only
    where the source says so (-ffp-contract=off)."""
    if os.environ.get("TICKETLAB_NO_COMPILE") == "1" or not mirrors_torch():
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in CAPABILITY_FLAGS:
        say(f"ticketlab: our kernels are not compiled for this CPU ({capability}); {PURE}")
        return None
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available():
        say(f"ticketlab: our kernels need ninja: pip install 'ticketlab[kernels]'; {PURE}")
        return None
    name = f"ticketlab_{source}_{capability.lower()}"
    cflags = ["-O3", "-fopenmp", "-ffp-contract=off", f"-DTICKETLAB_HEADERS={headers_hash()}",
              *CAPABILITY_FLAGS[capability]]
    directory = None
    try:
        directory = build_root() / name
        directory.mkdir(parents=True, exist_ok=True)
        with build_lock(directory, what):
            return compile_and_load(name, CSRC / f"{source}.cpp", what, directory, cflags)
    except Exception as error:  # no compiler, a failed build, an unwritable cache: the caller's pure-torch path
        say(f"ticketlab: the {what} did not build ({failure(error, directory)}); {PURE}")
        return None


def failure(error: Exception, directory: Path | None) -> str:
    """The first line of `error`, and where its whole text (a compiler's output) was logged."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    try:
        log = directory / "build.log"
        log.write_text(f"{type(error).__name__}: {error}\n")
    except (OSError, TypeError):  # no directory to log into
        return first
    return f"{first}; log: {log}"


def compile_and_load(name: str, source: Path, what: str, directory: Path, cflags: list[str]):
    """Load the extension, building it first where its inputs changed; every build is announced: before it where
    our stamp of the inputs predicts it, after it where torch's loader rebuilt for a reason the stamp missed."""
    library, stamp_file = directory / f"{name}.so", directory / "ticketlab.stamp"
    stamp = inputs_stamp(source, cflags)
    reason = rebuild_reason(library, stamp_file, stamp)
    if reason:
        print(f"ticketlab: building the {what} ({reason}; 0.5-3 min) in {directory}", file=sys.stderr)
    before, start = modified(library), time.monotonic()
    module = load_library(name, source, directory, cflags)
    if reason is None and modified(library) != before:
        print(f"ticketlab: rebuilt the {what} in {directory} ({time.monotonic() - start:.0f} s)", file=sys.stderr)
    stamp_file.write_text(stamp)
    return module


def rebuild_reason(library: Path, stamp_file: Path, stamp: str) -> str | None:
    """Why the library will be built, or None where it looks up to date (no stamp: left to the check after)."""
    if not library.exists():
        return "first build here"
    if stamp_file.exists() and stamp_file.read_text() != stamp:
        return "its sources, flags or torch changed"
    return None


def load_library(name: str, source: Path, directory: Path, cflags: list[str]):
    """torch's loader: builds with ninja where the library is out of date, then imports it."""
    from torch.utils.cpp_extension import load

    return load(name=name, sources=[str(source)], build_directory=str(directory), verbose=False,
                extra_cflags=list(cflags), extra_ldflags=list(LDFLAGS))


def build_root() -> Path:
    """Where this installation's kernels are built: keyed by the package's path and the torch and Python versions,
    so two checkouts or virtualenvs never rebuild each other's kernels (torch's shared ~/.cache/torch_extensions
    did). Under $TICKETLAB_KERNELS_DIR, else the user's cache directory."""
    base = os.environ.get("TICKETLAB_KERNELS_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ticketlab" / "kernels"
    origin = f"{PACKAGE} torch {torch.__version__} python {sys.version_info.major}.{sys.version_info.minor}"
    root = Path(base) / hashlib.sha256(origin.encode()).hexdigest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    (root / "origin.txt").write_text(origin + "\n")  # whose builds these are, for a user cleaning the cache
    return root


def inputs_stamp(source: Path, cflags: list[str]) -> str:
    """A hash of what a build depends on: the source, our headers, the flags, torch and the compiler chosen."""
    parts = [source.read_bytes(), *(h.read_bytes() for h in sorted(CSRC.glob("*.h"))),
             " ".join([*cflags, *LDFLAGS, str(torch.__version__), os.environ.get("CXX", "c++")]).encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def headers_hash() -> str:
    """A hash of our shared headers (csrc/*.h): torch's loader rebuilds when a source or a flag changes, not when an
    included header does, so their hash goes into the flags."""
    digest = hashlib.sha256(b"".join(h.read_bytes() for h in sorted(CSRC.glob("*.h"))))
    return digest.hexdigest()[:16]


def modified(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


@functools.cache
def say(message: str) -> None:
    """One line on stderr, once per process (both kernels meet the same missing ninja)."""
    print(message, file=sys.stderr)
