"""The torch release our kernels mirror. csrc/adam_math.h copies torch's fused CPU Adam step, and KeptOptimizer's
compaction (KEPT_PAD) relies on where that step leaves its vector path for its scalar one: both give torch's bits
only on the release they were checked against. On any other torch every kernel stands down, `ticketlab.accel.select`
gives the pure-torch path (the configured torch optimizer, gradients masked by MaskedUpdate), and one line on stderr
says so."""

import functools
import sys

import torch

TORCH_MIRRORED = "2.13."  # the torch release whose fused Adam our kernels reproduce bit for bit


def mirrors_torch() -> bool:
    """Whether this torch is the release our kernels mirror; the first time it is not, says so on stderr."""
    if torch.__version__.startswith(TORCH_MIRRORED):
        return True
    announce(str(torch.__version__))
    return False


@functools.cache
def announce(version: str) -> None:
    print(f"ticketlab: torch {version} is not the version our kernels mirror ({TORCH_MIRRORED}x); training takes "
          "the pure-torch path", file=sys.stderr)
