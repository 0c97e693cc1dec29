"""GoogLeNet / Inception v1 (Szegedy et al. 2015, Table 1) for ImageNet 224x224, without the auxiliary heads.

As in the paper (and Caffe's bvlc_googlenet): true 5x5 convolutions in the third branch, biases, no batch
norm, LRN after the stem; about 7.0M parameters for 1000 classes. (torchvision's variant differs: BN, 3x3
instead of 5x5, 6.6M.) Modules: conv1, conv2 (1x1 reduce), conv3, inception3a..inception5b with branches
`b1`, `b2_reduce`/`b2`, `b3_reduce`/`b3`, `b4_proj`, and `fc`.
"""

from collections import OrderedDict

import torch
from torch import nn

from ticketlab.models.init import kaiming_normal_
from ticketlab.models.spec import MODELS

INPUT_SHAPE = (3, 224, 224)
# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), Table 1 of the paper.
INCEPTIONS = OrderedDict([
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
])
POOL_BEFORE = ("inception4a", "inception5a")


def conv(in_channels: int, out_channels: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)


class Inception(nn.Module):
    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        n1, n3_reduce, n3, n5_reduce, n5, pool_proj = widths
        self.b1 = conv(in_channels, n1, 1)
        self.b2_reduce = conv(in_channels, n3_reduce, 1)
        self.b2 = conv(n3_reduce, n3, 3)
        self.b3_reduce = conv(in_channels, n5_reduce, 1)
        self.b3 = conv(n5_reduce, n5, 5)
        self.b4_pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.b4_proj = conv(in_channels, pool_proj, 1)
        self.out_channels = n1 + n3 + n5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = torch.relu
        return torch.cat([relu(self.b1(x)), relu(self.b2(relu(self.b2_reduce(x)))),
                          relu(self.b3(relu(self.b3_reduce(x)))), relu(self.b4_proj(self.b4_pool(x)))], dim=1)


def _lrn() -> nn.Module:
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class GoogLeNet(nn.Sequential):
    input_shape = INPUT_SHAPE

    def __init__(self, num_classes: int, dropout: float = 0.4):
        layers: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(3, 64, 7, stride=2, padding=3)), ("relu_conv1", nn.ReLU()),    # 224 -> 112
            ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)), ("norm1", _lrn()),                   # 112 -> 56
            ("conv2", nn.Conv2d(64, 64, 1)), ("relu_conv2", nn.ReLU()),
            ("conv3", nn.Conv2d(64, 192, 3, padding=1)), ("relu_conv3", nn.ReLU()),
            ("norm3", _lrn()), ("pool3", nn.MaxPool2d(3, 2, ceil_mode=True)),                   # 56 -> 28
        ]
        channels = 192
        for name, widths in INCEPTIONS.items():
            if name in POOL_BEFORE:                                                             # 28 -> 14 -> 7
                layers.append((f"pool_{name}", nn.MaxPool2d(3, 2, ceil_mode=True)))
            block = Inception(channels, widths)
            layers.append((name, block))
            channels = block.out_channels
        layers += [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                   ("dropout", nn.Dropout(dropout)), ("fc", nn.Linear(channels, num_classes))]
        super().__init__(OrderedDict(layers))
        kaiming_normal_(self)


@MODELS.register("googlenet", input_shape=INPUT_SHAPE, num_classes=1000)
def googlenet(num_classes: int, dropout: float = 0.4) -> nn.Module:
    """GoogLeNet / Inception v1 as in the paper (ImageNet 224x224, no aux heads), He-normal init."""
    return GoogLeNet(num_classes, dropout=dropout)
