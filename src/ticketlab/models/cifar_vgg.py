"""VGG with batch norm for CIFAR-10, as in OpenLTH (`cifar_vgg_16`, `cifar_vgg_19`).

3x3 convolutions (with bias) + BN + ReLU, 2x2 max-pooling between stages, the 2x2 output averaged to 512
features and a single fc layer 512 -> classes. Parameter names equal OpenLTH's (`layers.0.conv.weight`, ...,
`fc.weight`), so its checkpoints load directly. Init as OpenLTH: He-normal weights, BN gamma ~ U[0, 1).
"""

import torch
from torch import nn

from ticketlab.models.init import kaiming_normal_
from ticketlab.models.spec import MODELS

INPUT_SHAPE = (3, 32, 32)
PLANS = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
}


class ConvBN(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class CifarVGG(nn.Module):
    input_shape = INPUT_SHAPE

    def __init__(self, plan, num_classes: int):
        super().__init__()
        layers, channels = [], INPUT_SHAPE[0]
        for step in plan:
            if step == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(ConvBN(channels, step))
                channels = step
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2)  # 2x2 -> 1x1 after four max-pools of a 32x32 input
        self.fc = nn.Linear(channels, num_classes)
        kaiming_normal_(self, bn_uniform=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(x)).flatten(1))


@MODELS.register("vgg16-cifar", input_shape=INPUT_SHAPE, num_classes=10)
def vgg16_cifar(num_classes: int) -> nn.Module:
    """VGG-16 with BN for CIFAR (OpenLTH cifar_vgg_16), single fc 512 -> classes."""
    return CifarVGG(PLANS[16], num_classes)


@MODELS.register("vgg19-cifar", input_shape=INPUT_SHAPE, num_classes=10)
def vgg19_cifar(num_classes: int) -> nn.Module:
    """VGG-19 with BN for CIFAR (OpenLTH cifar_vgg_19; Frankle & Carbin's VGG-19)."""
    return CifarVGG(PLANS[19], num_classes)
