"""One layer for K stacked copies, each copy computing what its own model computes: Linear as one batched matmul,
convolutions copy by copy (stacked.py explains the choices)."""

import torch
import torch.nn.functional as F
from torch import nn

CONVS = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d}


class Unsupported(Exception):
    """The model cannot be batched (the engine then trains its copies one after another)."""


def linear(w: torch.Tensor, b: torch.Tensor | None, h: torch.Tensor, shared: bool) -> torch.Tensor:
    """w (K, O, F); h (K, B, F), or (B, F) when shared -> (K, B, O)."""
    if shared:  # one GEMM over the stacked weights: (B, F) @ (F, K*O)
        flat = w.reshape(-1, w.shape[-1]).t()
        out = h @ flat if b is None else torch.addmm(b.reshape(1, -1), h, flat)
        return out.view(h.shape[0], w.shape[0], w.shape[1]).transpose(0, 1)
    return BatchedLinear.apply(h, w, b)


class BatchedLinear(torch.autograd.Function):
    """h (K, B, F) @ w(K, O, F)^T + b (K, O), per copy as nn.Linear computes it; gradients laid out as w and b."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(h, w)
        ctx.has_bias = b is not None
        return matmul(h, w.mT, b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, w = ctx.saved_tensors  # as nn.Linear's backward: grad @ w, grad^T @ h, grad summed over the batch
        grad_h = matmul(grad, w) if ctx.needs_input_grad[0] else None
        return grad_h, matmul(grad.mT, h), grad.sum(1) if ctx.has_bias else None


def matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a[k] @ b[k] (+ bias[k]) for every copy k, with the numbers torch.mm / torch.addmm give: one batched matmul where
    it computes the same (tested; torch multiplies products under 400 multiply-adds, and vectors, its own way), else
    copy by copy."""
    rows, inner, cols = a.shape[1], a.shape[2], b.shape[2]
    if rows * inner * cols >= 400 and min(rows, cols) > 1:
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias.unsqueeze(1), a, b)
    if bias is None:
        return torch.stack([torch.mm(x, y) for x, y in zip(a, b, strict=True)])
    return torch.stack([torch.addmm(c, x, y) for x, y, c in zip(a, b, bias, strict=True)])


def conv(module: nn.Module, w: torch.Tensor, b: torch.Tensor | None, h: torch.Tensor, shared: bool,
         relu: bool = False, pool: bool = False) -> torch.Tensor:
    """w (K, O, C/g, *kernel); h (K, B, C, *spatial), or (B, C, *spatial) when shared -> (K, B, O, *spatial'). A sparse
    weight (sparse_conv.py) runs its kernel over all copies, with `relu` and a 2x2 max-pool (`pool`) fused in (dense
    weights take neither)."""
    if not torch.is_tensor(w):
        return w(h.expand(w.shape[0], *h.shape) if shared else h, b, relu, pool)
    fn = CONVS[type(module)]
    # unbind, not h[k]: the backward of K selections would fill K zero tensors of the stacked size
    hs, ws = [h] * w.shape[0] if shared else h.unbind(0), w.unbind(0)
    bs = [None] * w.shape[0] if b is None else b.unbind(0)
    return torch.stack([fn(x, wk, bk, module.stride, module.padding, module.dilation, module.groups)
                        for x, wk, bk in zip(hs, ws, bs, strict=True)])
