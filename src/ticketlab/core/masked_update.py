"""Gradient masking: pruned gradients are zeroed before each optimizer step (and pruned weights after it), so pruned
weights get no update and stay exactly zero, for any optimizer; on one CPU thread by a compiled loop (numba)."""

import functools

import torch
from torch import nn

from ticketlab.core.masks import Masks


def _mask_grad(grad, mask):
    """grad *= mask over a flat float32 gradient and a uint8 mask: the same bits as multiplying by a float mask (by 0
    or 1: exact, -0.0 and NaN alike), reading a quarter of the mask bytes."""
    for i in range(grad.shape[0]):
        grad[i] *= mask[i]


@functools.cache
def mask_grad_kernel():
    """`_mask_grad` compiled by numba (cached on disk), or None without numba."""
    try:
        import numba
    except ImportError:  # pragma: no cover
        return None
    return numba.njit(nogil=True, cache=True)(_mask_grad)


class MaskedUpdate:
    """Zeroes pruned gradients before each optimizer step, and pruned weights after it unless the optimizer is
    zero-preserving (ZERO_PRESERVING). Tensors without pruned entries are skipped: the dense level costs nothing.

    On one CPU thread the gradients of float32 tensors are masked by a compiled loop with one-byte masks: the float
    masks of torch's multiply no longer fit in cache beside the model and its optimizer state, and that multiply was
    most of masked training's overhead over dense training (LeNet-300-100, one thread: +3.1% -> +0.0% of a step).
    With more threads torch's multiply runs in parallel and was faster than the serial loop (+1.8% against +3.7%)."""

    def __init__(self, params: list[torch.Tensor], masks: list[torch.Tensor], reapply: bool = True):
        """`params` with their masks (bool or 0/1, each its parameter's shape)."""
        self.params = list(params)
        self.masks = [m.to(device=p.device, dtype=p.dtype) for p, m in zip(params, masks, strict=True)]
        self.reapply = reapply
        compiled = all(p.device.type == "cpu" and p.dtype == torch.float32 for p in self.params) and self.params
        self.kernel = mask_grad_kernel() if compiled else None
        self.bytes = [m.to(torch.uint8).reshape(-1).numpy() for m in masks] if self.kernel else None

    @classmethod
    def for_model(cls, model: nn.Module, masks: Masks, reapply: bool = True,
                  skip: frozenset = frozenset()) -> "MaskedUpdate":
        """Over the pruned parameters of `model`, but those in `skip` (masked by the optimizer: KeptOptimizer)."""
        masks.check(model)
        params = dict(model.named_parameters())
        pruned = [n for n in masks if n not in skip and not bool(masks[n].all())]
        return cls([params[n] for n in pruned], [masks[n] for n in pruned], reapply)

    def before_step(self) -> None:  # no torch.no_grad(): gradients do not require grad, and it costs ~10 µs a step
        if not self.params:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        if (self.kernel is not None and len(grads) == len(self.params) and torch.get_num_threads() == 1
                and all(g.is_contiguous() for g in grads)):
            for grad, mask in zip(grads, self.bytes, strict=True):
                self.kernel(grad.numpy().reshape(-1), mask)
        elif len(grads) == len(self.params):
            torch._foreach_mul_(grads, self.masks)
        else:
            for p, m in zip(self.params, self.masks, strict=True):
                if p.grad is not None:
                    p.grad.mul_(m)

    @torch.no_grad()
    def after_step(self) -> None:
        if self.params and self.reapply:
            torch._foreach_mul_(self.params, self.masks)
