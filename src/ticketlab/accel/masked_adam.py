"""The masked Adam/AdamW step (csrc/masked_adam.cpp): torch's fused CPU step with the gradient mask applied in the
same pass, the same bits as masking the gradient and then stepping. Built once per installation (extensions.py);
where it cannot be built, or under another torch than the one whose kernel it mirrors (torch_mirror.py), `kernel()`
is None and masked training masks the gradients in a separate pass instead."""

import functools

import torch

from ticketlab.accel.extensions import build
from ticketlab.accel.torch_mirror import TORCH_MIRRORED, mirrors_torch

__all__ = ["TORCH_MIRRORED", "kernel", "mirrors_torch", "usable"]


@functools.cache
def kernel():
    """The compiled extension (its `adam_steps_`), or None where it is not available (`build`: another torch, no
    compiler, a failed build)."""
    return build("masked_adam", "masked Adam kernel")


def usable(p: torch.Tensor) -> bool:
    """Whether the kernel (Adam/AdamW) can step `p`: a contiguous float32 CPU tensor, and the kernel is built."""
    return p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous() and kernel() is not None
