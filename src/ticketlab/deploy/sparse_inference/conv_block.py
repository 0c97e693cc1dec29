"""ConvBlock: a sparse Conv2d with the ReLU (and 2x2 max-pool) after it, run as one call of the direct kernel."""

import torch
from torch import nn

from ticketlab.deploy.sparse_inference.kernels import DIRECT
from ticketlab.deploy.sparse_inference.layers import SparseConv2d


class ConvBlock(nn.Module):
    """A run Conv2d -> ReLU [-> MaxPool2d(2)] of an nn.Sequential. Where the convolution's plan picks the direct
    kernel for a batch, the kernel applies the ReLU and the pool as it writes its output, as it does in training:
    no passes of their own over the output, which at batch 1 are a tenth of LeNet-5's time. Elsewhere (other kernels,
    the convolution swapped back to dense) the modules run as they are (`self.layers`)."""

    def __init__(self, layers: nn.Sequential):
        super().__init__()
        self.layers = layers
        self.pool = len(layers) == 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.layers[0]
        if isinstance(conv, SparseConv2d) and conv.kernel_of(x) == DIRECT:
            return conv.run_direct(x, relu=True, pool=self.pool)
        return self.layers(x)

    def extra_repr(self) -> str:
        return f"direct kernel: ReLU{' and 2x2 max-pool' if self.pool else ''} fused"


def fusable_pool(module: nn.Module) -> bool:
    """A max-pool the direct kernel can apply: 2x2, stride 2, no padding or dilation, floor, no indices."""
    def two(v) -> bool:
        return v in (2, (2, 2))

    return (isinstance(module, nn.MaxPool2d) and two(module.kernel_size) and two(module.stride)
            and module.padding in (0, (0, 0)) and module.dilation in (1, (1, 1)) and not module.ceil_mode
            and not module.return_indices)
