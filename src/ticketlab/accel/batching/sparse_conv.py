"""Sparse training of stacked Conv2d layers: the weights of K copies stored, convolved and given gradients as their
kept entries only (csrc/sparse_conv.cpp, a direct sparse convolution), so a ticket keeping 10% of its weights does
about 10% of the dense work. The interface is SparseWeight's (sparse_linear.py): `values` is the trained leaf (the kept
entries of all copies in the stacked dense weight's order: copy, out channel, in channel, ky, kx) and `write_dense`
brings the stacked dense weight up to date.

How (conv_layout.py): each sample's input is padded and split into its stride phases, so that every kept entry
reads one shifted input plane; the kernel sums those planes, weighted, a run of contiguous multiply-adds per kept
weight (no im2col). The input's gradient is the same sum over the transposed entries, the kept values' gradient a dot
product per entry. Numbers differ from torch's convolution by rounding only (another summation order) and do not
depend on the thread count or on the other copies."""

import functools

import torch
from torch import nn

from ticketlab.accel.batching.conv_layout import ConvGeometry, Layout
from ticketlab.accel.batching.kept_entries import KeptEntries
from ticketlab.accel.batching.sparse_linear import NO_TENSOR
from ticketlab.accel.extensions import build

# Up to here a sparse layer's forward + backward (gradients of input, weights and bias) was clearly faster than torch's
# dense convolution of each copy on every Conv-6 and ResNet-20 layer (benchmarks/sparse_conv_layer.py, 8 copies, batch
# 60, 2 threads): at 10% kept 0.17-0.26x the dense time (Conv-6), 0.14-0.37x (ResNet-20); <= 0.70x at 30%; the
# worst, Conv-6's conv6 (256 channels on 8x8), was 1.09x at 50% (conv5: 1.05x).
SPARSE_CONV_MAX_KEPT = 0.3
# Convolutions of few input channels, where torch's dense convolution is least efficient, were faster sparse still at
# 50% kept: ResNet-20's 16- and 32-channel layers 0.37-0.73x the dense time (the same table).
SMALL_CONV_CHANNELS, SMALL_CONV_MAX_KEPT = 32, 0.5


@functools.cache
def kernel():
    """The compiled extension (`forward`, `input_grad`, `kept_grad` and the layout's helpers), or None where it is
    not available (`build`): layers then train dense."""
    return build("sparse_conv", "sparse convolution kernel")


def trains_sparse_conv(module: nn.Conv2d, weight: torch.Tensor, masks: torch.Tensor) -> bool:
    """Whether a stacked Conv2d weight (K, O, C, kh, kw) under stacked masks trains sparse: float32 on CPU, one
    group, zero padding given as numbers or 'valid'/'same', no copy keeping more than SPARSE_CONV_MAX_KEPT
    (SMALL_CONV_MAX_KEPT for layers of at most SMALL_CONV_CHANNELS input channels), and the kernel built."""
    if not (isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"):
        return False
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.dim() != 5:
        return False
    kept = masks.reshape(masks.shape[0], -1).sum(1).max().item() / masks[0].numel()
    most = SMALL_CONV_MAX_KEPT if module.in_channels <= SMALL_CONV_CHANNELS else SPARSE_CONV_MAX_KEPT
    return kept <= most and kernel() is not None


class SparseConvWeight(KeptEntries):
    """The kept entries of a stacked Conv2d weight (K, O, C, kh, kw) under stacked masks: `values` (a leaf, trained),
    `counts` (kept per copy), and where each reads the input, per input size (`layout`). Called on h (K, B, C, H, W)
    and a bias (K, O) or None, it is `torch.stack([F.conv2d(h[k], (dense * masks)[k], bias[k], stride, padding,
    dilation) for k in range(K)])` with gradients for h, the values and the bias."""

    def __init__(self, dense: torch.Tensor, masks: torch.Tensor, stride=1, padding=0, dilation=1):
        super().__init__(dense, masks)
        self.geometry = ConvGeometry(tuple(dense.shape[1:]), stride, padding, dilation)
        self.layouts: dict[tuple[int, int], Layout] = {}

    def layout(self, height: int, width: int) -> Layout:
        """The padded input's shape and the entries' offsets for inputs of this size (made once per size)."""
        if (height, width) not in self.layouts:
            self.layouts[height, width] = Layout(self.geometry, self.index, len(self.counts), height, width,
                                                 kernel())
        return self.layouts[height, width]

    def __call__(self, h: torch.Tensor, bias: torch.Tensor | None, relu: bool = False,
                 pool: bool = False) -> torch.Tensor:
        """h (K, B, C, H, W) -> (K, B, O, Ho, Wo): each copy's F.conv2d with its masked weight and bias, then F.relu
        if `relu`, then F.max_pool2d(., 2) if `pool` (after a ReLU only). Both are fused into the kernel: a batched
        activation is too large for the caches, and a pass of their own over it, forward and backward, cost about
        as much as the sparse convolution."""
        return SparseConv.apply(h, self.values, bias, self, relu, pool)


class SparseConv(torch.autograd.Function):
    """The kernel as an autograd function: gradients for the input, the kept values and the bias. The kernel adds the
    bias (and applies a fused ReLU) as it writes the output, and sums the bias's gradient (zeroed where the ReLU's
    output is not positive) as it reads the output's: no pass of their own."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, weight: SparseConvWeight,
                relu: bool, pool: bool):
        k, b = h.shape[:2]
        lay = weight.layout(*h.shape[-2:])
        x = h.reshape(k * b, *h.shape[2:]).contiguous()
        bias_ = NO_TENSOR if bias is None else bias.detach().contiguous()
        y, where = lay.forward(x, values.detach().contiguous(), bias_, relu, pool)
        ctx.save_for_backward(x, values, y if relu else NO_TENSOR, where)
        ctx.layout = lay
        return y.unflatten(0, (k, b))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, values, relu_out, where = ctx.saved_tensors
        lay = ctx.layout
        k, b = grad.shape[:2]
        gy = grad.reshape(k * b, *grad.shape[2:]).contiguous()
        grad_h = grad_values = grad_bias = None
        if ctx.needs_input_grad[0]:
            gx = kernel().input_grad(gy, values.detach()[lay.perm], lay.colptr, lay.back_blocks, lay.off_back,
                                     lay.masks_back, lay.geometry(), relu_out, where)
            grad_h = gx.unflatten(0, (k, b))
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_values, grad_bias = kernel().kept_grad(gy, x, lay.grad_ptr, lay.grad_blocks, lay.off, lay.masks,
                                                        lay.geometry(), relu_out, where)
        return grad_h, grad_values, (grad_bias if ctx.needs_input_grad[2] else None), None, None, None
