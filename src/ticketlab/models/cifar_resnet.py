"""ResNet for CIFAR-10 (He et al. 2016, Section 4.2): depth 6n+2, stages of width w, 2w, 4w (w = 16).
Registered as resnet20 and resnet56 (any 6n+2 depth through the `depth` option).

Shortcut when the shape changes: `shortcut="conv"` (default) is a strided 1x1 conv + BN, as in OpenLTH's
`cifar_resnet_20`, whose parameter names this model shares (`conv`, `bn`, `blocks.3.conv1`, `fc`);
`shortcut="pad"` is He et al.'s option A (subsample and zero-pad channels, no parameters).
Init as OpenLTH: He-normal weights, BN gamma ~ U[0, 1).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.init import kaiming_normal_
from ticketlab.models.spec import MODELS

INPUT_SHAPE = (3, 32, 32)
SHORTCUTS = ("conv", "pad")


class PadShortcut(nn.Module):
    """Option A: take every other pixel and zero-pad the new channels."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class Block(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, downsample: bool, shortcut: str):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if not downsample and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Sequential()
        elif shortcut == "conv":
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = PadShortcut(out_channels - in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    input_shape = INPUT_SHAPE

    def __init__(self, depth: int, width: int, num_classes: int, shortcut: str):
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise TicketlabError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, ...), got {depth!r}")
        if shortcut not in SHORTCUTS:
            raise TicketlabError(f"CIFAR ResNet shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        per_stage = (depth - 2) // 6
        self.conv = nn.Conv2d(INPUT_SHAPE[0], width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, channels = [], width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            for i in range(per_stage):
                blocks.append(Block(channels, stage_width, stage > 0 and i == 0, shortcut))
                channels = stage_width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)
        kaiming_normal_(self, bn_uniform=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(out.mean(dim=(2, 3)))


@MODELS.register("resnet20", input_shape=INPUT_SHAPE, num_classes=10)
def resnet20(num_classes: int, depth: int = 20, width: int = 16, shortcut: str = "conv") -> nn.Module:
    """CIFAR ResNet-20 (OpenLTH cifar_resnet_20; options depth=6n+2, width=16, shortcut=conv|pad)."""
    return CifarResNet(depth, width, num_classes, shortcut)


@MODELS.register("resnet56", input_shape=INPUT_SHAPE, num_classes=10)
def resnet56(num_classes: int, depth: int = 56, width: int = 16, shortcut: str = "conv") -> nn.Module:
    """CIFAR ResNet-56 (He et al. 2016, 9 blocks per stage; OpenLTH cifar_resnet_56), same options as resnet20."""
    return CifarResNet(depth, width, num_classes, shortcut)
