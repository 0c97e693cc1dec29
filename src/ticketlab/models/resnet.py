"""He et al. (2016)'s ImageNet ResNets, ResNet-18 (basic blocks [2, 2, 2, 2]) and ResNet-50 (bottleneck blocks
[3, 4, 6, 3]), with the stride on the 3x3 conv ("v1.5", as torchvision; the parameter count is the same either way).

Two stems. `imagenet`: 7x7 conv stride 2 and 3x3 max-pool, for 224x224 inputs. `cifar`: one 3x3 conv stride 1 and
no max-pool, the standard adaptation to 32x32 inputs (kuangliu/pytorch-cifar, used by the CIFAR-10 lottery-ticket
work of Chen et al.), so the last stage still sees 4x4 feature maps instead of 1x1.
Parameter names follow torchvision (`conv1`, `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`).
Parameters: resnet50 25,557,032 (1000 classes); resnet18-cifar 11,173,962 and resnet50-cifar 23,520,842 (10 classes).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.init import kaiming_normal_
from ticketlab.models.spec import MODELS

IMAGENET_SHAPE = (3, 224, 224)
CIFAR_SHAPE = (3, 32, 32)
STEMS = {"imagenet": IMAGENET_SHAPE, "cifar": CIFAR_SHAPE}


def downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The projection shortcut (1x1 conv + BN) where the shape changes; identity elsewhere."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample(in_channels, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = downsample(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.downsample(x))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], blocks: tuple[int, ...], num_classes: int, stem: str):
        super().__init__()
        if stem not in STEMS:
            raise TicketlabError(f"ResNet stem must be one of {', '.join(STEMS)}, got {stem!r}")
        self.input_shape = STEMS[stem]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        channels = 64
        for stage, count in enumerate(blocks):
            width = 64 * 2**stage
            layer = []
            for i in range(count):
                layer.append(block(channels, width, stride=2 if stage > 0 and i == 0 else 1))
                channels = width * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(channels, num_classes)
        kaiming_normal_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


@MODELS.register("resnet50", input_shape=IMAGENET_SHAPE, num_classes=1000)
def resnet50(num_classes: int) -> nn.Module:
    """ResNet-50 (ImageNet 224x224, bottleneck blocks), He-normal init."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, "imagenet")


@MODELS.register("resnet18-cifar", input_shape=CIFAR_SHAPE, num_classes=10)
def resnet18_cifar(num_classes: int) -> nn.Module:
    """ResNet-18 for 32x32 inputs (3x3 stem stride 1, no max-pool), He-normal init."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, "cifar")


@MODELS.register("resnet50-cifar", input_shape=CIFAR_SHAPE, num_classes=10)
def resnet50_cifar(num_classes: int) -> nn.Module:
    """ResNet-50 for 32x32 inputs (3x3 stem stride 1, no max-pool), He-normal init."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, "cifar")
