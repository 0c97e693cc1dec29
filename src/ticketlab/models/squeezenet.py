"""SqueezeNet (Iandola et al. 2016), versions 1.0 (1,248,424 parameters for 1000 classes) and 1.1
(1,235,496; 2.4x fewer MACs). Fire modules `fire2`..`fire9` with `squeeze`, `expand1x1`, `expand3x3`; the
classifier is the 1x1 convolution `conv10` followed by global average pooling, so there is no Linear layer.
"""

from collections import OrderedDict

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.init import kaiming_normal_
from ticketlab.models.spec import MODELS

INPUT_SHAPE = (3, 224, 224)
# (squeeze, expand) channels of fire2..fire9; each expand branch has `expand` filters.
FIRES = ((16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256))
POOL_BEFORE = {"1.0": (2, 5, 9), "1.1": (2, 4, 6)}  # fire modules preceded by a 3x3/2 max-pool


class Fire(nn.Module):
    def __init__(self, in_channels: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], dim=1)


class SqueezeNet(nn.Sequential):
    input_shape = INPUT_SHAPE

    def __init__(self, num_classes: int, version: str = "1.0", dropout: float = 0.5):
        if version not in POOL_BEFORE:
            raise TicketlabError(f"squeezenet version must be one of {', '.join(POOL_BEFORE)}, got {version!r}")
        stem = nn.Conv2d(3, 96, 7, stride=2) if version == "1.0" else nn.Conv2d(3, 64, 3, stride=2)
        layers: list[tuple[str, nn.Module]] = [("conv1", stem), ("relu_conv1", nn.ReLU())]
        channels = stem.out_channels
        for number, (squeeze, expand) in enumerate(FIRES, start=2):
            if number in POOL_BEFORE[version]:
                layers.append((f"pool_fire{number}", nn.MaxPool2d(3, 2, ceil_mode=True)))
            layers.append((f"fire{number}", Fire(channels, squeeze, expand)))
            channels = 2 * expand
        layers += [
            ("drop", nn.Dropout(dropout)),
            ("conv10", nn.Conv2d(channels, num_classes, 1)), ("relu_conv10", nn.ReLU()),
            ("pool10", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
        ]
        super().__init__(OrderedDict(layers))
        kaiming_normal_(self)


@MODELS.register("squeezenet", input_shape=INPUT_SHAPE, num_classes=1000)
def squeezenet(num_classes: int, version: str = "1.0", dropout: float = 0.5) -> nn.Module:
    """SqueezeNet v1.0 (ImageNet 224x224; option version="1.1"), He-normal init."""
    return SqueezeNet(num_classes, version=version, dropout=dropout)
