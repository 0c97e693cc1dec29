"""VGG-16 for ImageNet (Simonyan & Zisserman 2015, configuration D) with Han et al.'s layer names.

conv1_1..conv5_3 and fc6..fc8, as top-level modules so parameter names read `conv1_1.weight`, `fc6.weight`.
138,357,544 parameters for 1000 classes at 224x224.
"""

from collections import OrderedDict

from torch import nn

from ticketlab.models.init import kaiming_normal_
from ticketlab.models.spec import MODELS

INPUT_SHAPE = (3, 224, 224)
BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Sequential):
    input_shape = INPUT_SHAPE

    def __init__(self, num_classes: int, dropout: float = 0.5):
        layers: list[tuple[str, nn.Module]] = []
        channels = INPUT_SHAPE[0]
        for block, widths in enumerate(BLOCKS, start=1):
            for i, width in enumerate(widths, start=1):
                layers += [(f"conv{block}_{i}", nn.Conv2d(channels, width, 3, padding=1)),
                           (f"relu{block}_{i}", nn.ReLU())]
                channels = width
            layers.append((f"pool{block}", nn.MaxPool2d(2)))  # 224 -> 7 after five pools
        layers += [
            ("flatten", nn.Flatten()),
            ("fc6", nn.Linear(512 * 7 * 7, 4096)), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]
        super().__init__(OrderedDict(layers))
        kaiming_normal_(self)


@MODELS.register("vgg16", input_shape=INPUT_SHAPE, num_classes=1000)
def vgg16(num_classes: int, dropout: float = 0.5) -> nn.Module:
    """VGG-16 (ImageNet 224x224), layer names of Han et al. 2015, He-normal init."""
    return VGG16(num_classes, dropout=dropout)
