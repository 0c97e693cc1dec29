"""ResNet-50 for ImageNet (He et al. 2016), bottleneck blocks [3, 4, 6, 3], stride on the 3x3 conv ("v1.5",
as torchvision; the parameter count is the same either way): 25,557,032 parameters for 1000 classes.
Parameter names follow torchvision (`conv1`, `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .init import kaiming_normal_
from .spec import MODELS

INPUT_SHAPE = (3, 224, 224)
EXPANSION = 4


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.downsample(x))


class ResNet50(nn.Module):
    input_shape = INPUT_SHAPE

    def __init__(self, num_classes: int, blocks=(3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(INPUT_SHAPE[0], 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for stage, count in enumerate(blocks):
            width = 64 * 2**stage
            layer = []
            for i in range(count):
                layer.append(Bottleneck(channels, width, stride=2 if stage > 0 and i == 0 else 1))
                channels = width * EXPANSION
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(channels, num_classes)
        kaiming_normal_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


@MODELS.register("resnet50", input_shape=INPUT_SHAPE, num_classes=1000)
def resnet50(num_classes: int) -> nn.Module:
    """ResNet-50 (ImageNet 224x224, bottleneck blocks), He-normal init."""
    return ResNet50(num_classes)
