"""Sparse training of stacked Linear layers: the weights of K copies stored, multiplied and stepped as their kept
entries only (csrc/sparse_linear.cpp), so a ticket keeping 15% of its weights does about 15% of the dense work.

A layer is trained this way when the kernel is built, the weights are float32 on CPU and no copy keeps more than
SPARSE_MAX_KEPT of them; its trainable parameter is then `SparseWeight.values` (the kept entries of all copies, in
CSR order: copy, row, column), and the stacked dense weight is brought up to date by `write_dense`. The layer's
numbers differ from the dense matmul's by rounding only (other summation order), and do not depend on the thread
count or on the other copies in the batch."""

import functools

import torch

from ticketlab.accel.batching.kept_entries import KeptEntries
from ticketlab.accel.extensions import build

# Up to here sparse layers were clearly faster than dense batched matmuls (benchmarks/sparse_training_layer.py:
# LeNet-300-100's fc1, 8 copies, batch 60, 2 threads, forward + backward: 0.69x the dense time at 40% kept, 1.03x at
# 50% and 1.14x at 60%, slower still with the input's gradient; docs/speed.md).
SPARSE_MAX_KEPT = 0.4
NO_TENSOR = torch.empty(0)  # the kernel's "none" (no bias, no fused ReLU)


@functools.cache
def kernel():
    """The compiled extension (`forward`, `backward`, `backward_step`), or None where it is not available (`build`:
    another torch than the one its Adam step mirrors, no compiler, a failed build): layers then train dense."""
    return build("sparse_linear", "sparse training kernel")


def trains_sparse(weight: torch.Tensor, masks: torch.Tensor) -> bool:
    """Whether a stacked Linear weight (K, O, F) under stacked masks trains sparse (see the module's docstring)."""
    kept = masks.reshape(masks.shape[0], -1).sum(1).max().item() / masks[0].numel()
    cpu_float32 = weight.device.type == "cpu" and weight.dtype == torch.float32
    return cpu_float32 and weight.dim() == 3 and kept <= SPARSE_MAX_KEPT and kernel() is not None


class SparseWeight(KeptEntries):
    """The kept entries of a stacked Linear weight (K, O, F) under stacked masks: `values` (a leaf, trained) and
    their CSR structure."""

    def __init__(self, dense: torch.Tensor, masks: torch.Tensor):
        super().__init__(dense, masks)
        k, self.out_features, in_features = dense.shape
        row = self.index // in_features  # over all copies' rows
        self.rowptr = pointers(row, k * self.out_features)
        self.col = (self.index % in_features).to(torch.int32)
        # the transposed structure, for the input's gradient: entries ordered by (copy, column, row), with their
        # positions among the values
        key = ((row // self.out_features) * in_features + self.col) * self.out_features + row % self.out_features
        key, self.perm = torch.sort(key)
        self.colptr = pointers(key // self.out_features, k * in_features)
        self.row = (key % self.out_features).to(torch.int32)

    def __call__(self, h: torch.Tensor, bias: torch.Tensor | None, shared: bool = False,
                 relu: bool = False) -> torch.Tensor:
        """h (K, B, F) -> (K, B, O); `shared`: h (B, F) seen by all copies (no gradients then); `relu`: with the
        ReLU that follows the layer applied (fused into the kernel)."""
        if shared:
            with torch.no_grad():
                return self.forward(batch_contiguous(h.t()), bias, relu).transpose(1, 2)
        return SparseLinear.apply(h, self.values, bias, self, relu)

    def forward(self, xt: torch.Tensor, bias: torch.Tensor | None, relu: bool = False) -> torch.Tensor:
        """x^T (K, F, B) or (F, B) -> y^T (K, O, B)."""
        return kernel().forward(xt, self.values.detach(), NO_TENSOR if bias is None else bias.detach().contiguous(),
                                self.rowptr, self.col, self.out_features, relu)


def batch_contiguous(t: torch.Tensor) -> torch.Tensor:
    """`t` (..., B) as the kernel reads it: the batch contiguous, any other strides (copied only if it is not)."""
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


def pointers(sorted_rows: torch.Tensor, rows: int) -> torch.Tensor:
    """CSR row pointers (rows + 1) of entries in row order."""
    out = torch.zeros(rows + 1, dtype=torch.int64)
    out[1:] = torch.bincount(sorted_rows, minlength=rows).cumsum(0)
    return out


class SparseLinear(torch.autograd.Function):
    """The kernel as an autograd function. Activations are kept feature-major between layers (y is returned as a
    transposed view of y^T, which elementwise layers preserve), so a chain of sparse layers transposes once. A ReLU
    after the layer can be fused in (`relu`): it costs no separate pass forward, nor an autograd node backward."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, weight: SparseWeight,
                relu: bool):
        xt = batch_contiguous(h.transpose(1, 2))
        yt = weight.forward(xt, bias, relu)
        ctx.save_for_backward(xt, values, yt if relu else NO_TENSOR)
        ctx.weight, ctx.bias = weight, bias
        return yt.transpose(1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xt, values, relu_yt = ctx.saved_tensors
        w, bias, input_grad = ctx.weight, ctx.bias, ctx.needs_input_grad[0]
        dyt, structure = batch_contiguous(grad.transpose(1, 2)), (w.rowptr, w.col, w.colptr, w.row, w.perm)
        if w.step is not None:  # values and bias stepped here: no gradients for them
            out = kernel().backward_step(dyt, xt, values.detach(), NO_TENSOR if bias is None else bias.detach(),
                                         *structure, input_grad, relu_yt, *w.step.arguments(values, bias))
            return (out[0].transpose(1, 2) if input_grad else None), None, None, None, None
        out = kernel().backward(dyt, xt, values, *structure, input_grad, relu_yt)
        bias_grad = out[1] if bias is not None else None
        return (out[2].transpose(1, 2) if input_grad else None), out[0], bias_grad, None, None
