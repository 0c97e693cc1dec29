"""LeNet-300-100 and LeNet-5 (Caffe 20-50-500 variant) for 28x28 grayscale digits.

Layer names match Han et al. (2015) Table 2-3 and Frankle & Carbin (2019): fc1..fc3, conv1, conv2, fc1, fc2.
"""

from collections import OrderedDict

from torch import nn

from ticketlab.models.init import glorot_normal_
from ticketlab.models.spec import MODELS


class LeNet300(nn.Sequential):
    """784-300-100-classes MLP with ReLU; 266,200 weights for 10 classes."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int):
        super().__init__(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(784, 300)), ("relu_fc1", nn.ReLU()),
            ("fc2", nn.Linear(300, 100)), ("relu_fc2", nn.ReLU()),
            ("fc3", nn.Linear(100, num_classes)),
        ]))
        glorot_normal_(self)


class LeNet5(nn.Sequential):
    """Caffe LeNet-5: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc classes; 430,500 weights for 10 classes.

    Caffe's prototxt has no ReLU after the convolutions; we add one, as Han et al.'s activation sparsity of
    conv1/conv2 outputs (82%/72% non-zero, Table 3) implies a rectifier there.
    """

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int):
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(1, 20, 5)), ("relu_conv1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),  # 28->24->12
            ("conv2", nn.Conv2d(20, 50, 5)), ("relu_conv2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),  # 12->8->4
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(50 * 4 * 4, 500)), ("relu_fc1", nn.ReLU()),
            ("fc2", nn.Linear(500, num_classes)),
        ]))
        glorot_normal_(self)


@MODELS.register("lenet300", input_shape=LeNet300.input_shape, num_classes=10)
def lenet300(num_classes: int) -> nn.Module:
    """LeNet-300-100 MLP (MNIST), Glorot-normal init."""
    return LeNet300(num_classes)


@MODELS.register("lenet5", input_shape=LeNet5.input_shape, num_classes=10)
def lenet5(num_classes: int) -> nn.Module:
    """LeNet-5, Caffe 20-50-500 variant (MNIST), Glorot-normal init."""
    return LeNet5(num_classes)
