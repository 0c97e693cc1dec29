"""AlexNet, Caffe `bvlc_alexnet` variant as pruned by Han et al. (2015, Table 4).

Two-tower grouping (groups=2 in conv2, conv4, conv5) and 227x227 input, so for 1000 classes the net has
60,965,224 parameters (60,954,656 weights). Layer names conv1..conv5, fc1..fc3 follow Han et al.
Local response normalisation after conv1 and conv2 as in Caffe (`lrn=False` drops it; it has no parameters).
"""

from collections import OrderedDict

from torch import nn

from ticketlab.models.init import kaiming_normal_
from ticketlab.models.spec import MODELS

INPUT_SHAPE = (3, 227, 227)


def _lrn(enabled: bool) -> nn.Module:
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if enabled else nn.Identity()


class AlexNet(nn.Sequential):
    input_shape = INPUT_SHAPE

    def __init__(self, num_classes: int, lrn: bool = True, dropout: float = 0.5):
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(3, 96, 11, stride=4)), ("relu_conv1", nn.ReLU()),        # 227 -> 55
            ("norm1", _lrn(lrn)), ("pool1", nn.MaxPool2d(3, 2)),                          # 55 -> 27
            ("conv2", nn.Conv2d(96, 256, 5, padding=2, groups=2)), ("relu_conv2", nn.ReLU()),
            ("norm2", _lrn(lrn)), ("pool2", nn.MaxPool2d(3, 2)),                          # 27 -> 13
            ("conv3", nn.Conv2d(256, 384, 3, padding=1)), ("relu_conv3", nn.ReLU()),
            ("conv4", nn.Conv2d(384, 384, 3, padding=1, groups=2)), ("relu_conv4", nn.ReLU()),
            ("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=2)), ("relu_conv5", nn.ReLU()),
            ("pool5", nn.MaxPool2d(3, 2)),                                                # 13 -> 6
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(256 * 6 * 6, 4096)), ("relu_fc1", nn.ReLU()), ("drop_fc1", nn.Dropout(dropout)),
            ("fc2", nn.Linear(4096, 4096)), ("relu_fc2", nn.ReLU()), ("drop_fc2", nn.Dropout(dropout)),
            ("fc3", nn.Linear(4096, num_classes)),
        ]))
        kaiming_normal_(self)


@MODELS.register("alexnet", input_shape=INPUT_SHAPE, num_classes=1000)
def alexnet(num_classes: int, lrn: bool = True, dropout: float = 0.5) -> nn.Module:
    """AlexNet, Caffe variant of Han et al. 2015 (ImageNet 227x227, grouped convs), He-normal init."""
    return AlexNet(num_classes, lrn=lrn, dropout=dropout)
