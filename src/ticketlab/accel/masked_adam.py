"""The masked Adam/AdamW step (csrc/masked_adam.cpp): torch's fused CPU step with the gradient mask applied in the
same pass, the same bits as masking the gradient and then stepping. Built once per machine (extensions.py); where
it cannot be built, or under another torch than the one whose kernel it mirrors (TORCH_MIRRORED), `kernel()` is
None and masked training masks the gradients in a separate pass instead."""

import functools

import torch

from ticketlab.accel.extensions import build

TORCH_MIRRORED = "2.13."  # the torch release whose fused Adam the kernel reproduces bit for bit


def mirrors_torch() -> bool:
    """Whether this torch is the one whose fused Adam our kernels reproduce (csrc/adam_math.h)."""
    return torch.__version__.startswith(TORCH_MIRRORED)


@functools.cache
def kernel():
    """The compiled extension (its `masked_adam_`), or None where it is not available."""
    if not mirrors_torch():
        return None
    return build("masked_adam", "masked Adam kernel")


def usable(p: torch.Tensor) -> bool:
    """Whether the kernel (Adam/AdamW) can step `p`: a contiguous float32 CPU tensor, and the kernel is built."""
    return p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous() and kernel() is not None
