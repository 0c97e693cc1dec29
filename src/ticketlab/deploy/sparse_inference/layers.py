"""The converted layers: Linear and Conv2d (via im2col) modules that pick a kernel per batch size from their plan."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.accel.batching.sparse_conv import NO_TENSOR, SparseConvWeight
from ticketlab.accel.batching.sparse_conv import kernel as direct_kernel
from ticketlab.deploy.sparse_inference.csr import CSRWeight
from ticketlab.deploy.sparse_inference.kernels import DIRECT


class SparseLayer(nn.Module):
    """Common part: the dense layer kept as the fallback (its pruned weights zeroed in place: it must be a CPU layer
    with a contiguous weight), the CSR weight, and the per-batch-size plan."""

    def __init__(self, dense: nn.Module, mask: torch.Tensor):
        super().__init__()
        self.dense = dense
        weight = dense.weight.detach()
        self.csr = CSRWeight(weight.reshape(weight.shape[0], -1), mask.reshape(weight.shape[0], -1), dense.bias,
                             zero_pruned=True)
        self.density = self.csr.values.numel() / max(mask.numel(), 1)
        self.plan: dict[int, str] = {}  # measured batch size -> kernel
        self.timings: dict[int, dict[str, float]] = {}  # measured batch size -> {kernel: seconds}

    def candidates(self, kernels) -> list[str]:
        """The kernels of `kernels` this layer can run."""
        return [k for k in kernels if k != DIRECT]

    def kernel_for(self, x: torch.Tensor, batch: int) -> str:
        kernel = self.plan.get(batch)
        if kernel == "dense":
            return kernel
        if kernel is None:
            if not self.plan:
                return "dense"
            kernel = self.plan[min(self.plan, key=lambda b: (abs(math.log2(b) - math.log2(max(batch, 1))), b))]
        if kernel != "dense" and (x.dtype != torch.float32 or x.device.type != "cpu"
                                  or (x.requires_grad and torch.is_grad_enabled())):
            return "dense"
        return kernel

    def extra_repr(self) -> str:
        plan = ", ".join(f"batch {b}: {k}" for b, k in sorted(self.plan.items()))
        return f"kept {100 * self.density:.1f}%, {plan or 'dense'}"


class SparseLinear(SparseLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel_for(x, x.shape[0] if x.dim() == 2 else x.numel() // max(x.shape[-1], 1))
        if kernel == "dense":  # the functional op, not the module: no second module call on the fallback path
            return F.linear(x, self.dense.weight, self.dense.bias)
        if kernel != "torch-csr" and x.dim() == 2 and x.shape[0] == 1 and x.is_contiguous():
            return self.csr.matvec(x, kernel)  # batch 1: each torch call around the kernel costs about a µs
        x2 = x.reshape(-1, x.shape[-1])
        # (rows, batch).t(): a transposed view, which the next sparse layer takes back without a copy
        return self.csr.matmul_t(x2.t(), kernel).t().reshape(*x.shape[:-1], self.csr.shape[0])


class SparseConv2d(SparseLayer):
    """im2col: unfold the input into columns (C*kh*kw, L) per example, then one sparse x dense product; or `direct`:
    the direct sparse convolution that trains batched tickets (ticketlab.accel's C++ kernel, Park et al. 2017), each
    kept weight adding its shifted input plane, no unfolded input."""

    def __init__(self, dense: nn.Module, mask: torch.Tensor):
        super().__init__(dense, mask)
        self.mask = mask
        self._direct = None  # (SparseConvWeight, its values, bias) once the direct kernel is used

    def candidates(self, kernels) -> list[str]:
        return [k for k in kernels if k != DIRECT or direct_kernel() is not None]

    def direct(self) -> tuple[SparseConvWeight, torch.Tensor, torch.Tensor]:
        """The layer as the direct kernel takes it (the stacked form with one copy: it lays out each input size
        once), its kept values and its bias, made on first use."""
        if self._direct is None:
            conv = self.dense
            weight = SparseConvWeight(conv.weight.detach()[None], self.mask[None], conv.stride, conv.padding,
                                      conv.dilation)
            bias = NO_TENSOR if conv.bias is None else conv.bias.detach().reshape(1, -1).contiguous()
            self._direct = (weight, weight.values.detach(), bias)
        return self._direct

    def run_direct(self, x: torch.Tensor, relu: bool = False, pool: bool = False) -> torch.Tensor:
        """The direct kernel's output for x (N, C, H, W), then max(0, .) if `relu`, then a 2x2 max-pool if `pool`
        (applied as the output is written)."""
        weight, values, bias = self.direct()
        return weight.layout(*x.shape[-2:]).forward(x.contiguous(), values, bias, relu, pool)[0]

    def kernel_of(self, x: torch.Tensor) -> str:
        """The kernel that runs input x: the plan's for its batch size; dense for an unbatched (3-D) input."""
        return self.kernel_for(x, x.shape[0]) if x.dim() == 4 else "dense"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.dense
        kernel = self.kernel_of(x)
        if kernel == "dense":  # only zero-padded convs are converted, so F.conv2d is the layer's own op
            return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
        if kernel == DIRECT:
            return self.run_direct(x)
        batch, _, height, width = x.shape
        cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (B, C*k*k, L)
        out_h, out_w = (_out_size(s, k, p, d, st) for s, k, p, d, st in zip(
            (height, width), conv.kernel_size, conv.padding, conv.dilation, conv.stride, strict=True))
        xt = cols[0] if batch == 1 else cols.transpose(0, 1).reshape(cols.shape[1], -1)
        out = self.csr.matmul_t(xt, kernel)  # (O, B*L)
        return out.reshape(-1, batch, out_h * out_w).transpose(0, 1).reshape(batch, -1, out_h, out_w)


def _out_size(size: int, kernel: int, padding: int, dilation: int, stride: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _convertible(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))
