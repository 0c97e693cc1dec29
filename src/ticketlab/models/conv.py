"""Conv-2, Conv-4 and Conv-6 of Frankle & Carbin (2019, Figure 2): VGG-like nets for CIFAR-10.

Pairs of 3x3 same-padding convolutions (64, 128, 256 filters), each pair followed by 2x2 max-pooling, then
fc1 256, fc2 256, fc3 classes; ReLU everywhere; Glorot-normal init. Layer names conv1..convN, fc1..fc3.
Weights (conv + fc, no biases) for 10 classes: 4,300,992 / 2,425,024 / 2,261,184.
"""

from collections import OrderedDict

from torch import nn

from ticketlab.models.init import glorot_normal_
from ticketlab.models.spec import MODELS

INPUT_SHAPE = (3, 32, 32)
WIDTHS = (64, 128, 256)  # filters of the first, second and third pair of convolutions


class ConvNet(nn.Sequential):
    input_shape = INPUT_SHAPE

    def __init__(self, pairs: int, num_classes: int):
        layers: list[tuple[str, nn.Module]] = []
        channels, side = INPUT_SHAPE[0], INPUT_SHAPE[1]
        for pair in range(pairs):
            for j in (1, 2):
                index = 2 * pair + j
                layers += [(f"conv{index}", nn.Conv2d(channels, WIDTHS[pair], 3, padding=1)),
                           (f"relu_conv{index}", nn.ReLU())]
                channels = WIDTHS[pair]
            layers.append((f"pool{pair + 1}", nn.MaxPool2d(2)))
            side //= 2
        layers += [
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(channels * side * side, 256)), ("relu_fc1", nn.ReLU()),
            ("fc2", nn.Linear(256, 256)), ("relu_fc2", nn.ReLU()),
            ("fc3", nn.Linear(256, num_classes)),
        ]
        super().__init__(OrderedDict(layers))
        glorot_normal_(self)


@MODELS.register("conv2", input_shape=INPUT_SHAPE, num_classes=10)
def conv2(num_classes: int) -> nn.Module:
    """Conv-2 of Frankle & Carbin 2019 (CIFAR-10), Glorot-normal init."""
    return ConvNet(1, num_classes)


@MODELS.register("conv4", input_shape=INPUT_SHAPE, num_classes=10)
def conv4(num_classes: int) -> nn.Module:
    """Conv-4 of Frankle & Carbin 2019 (CIFAR-10), Glorot-normal init."""
    return ConvNet(2, num_classes)


@MODELS.register("conv6", input_shape=INPUT_SHAPE, num_classes=10)
def conv6(num_classes: int) -> nn.Module:
    """Conv-6 of Frankle & Carbin 2019 (CIFAR-10), Glorot-normal init."""
    return ConvNet(3, num_classes)
