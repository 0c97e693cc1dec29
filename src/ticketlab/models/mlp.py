"""A configurable fully connected net for small inputs (MNIST, MNIST-1D, teacher-student data).

Layers fc1..fcN with ReLU between them; the input is flattened, so any `input_shape` works. Glorot-normal init.
"""

import math
from collections import OrderedDict
from itertools import pairwise

from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.init import glorot_normal_
from ticketlab.models.spec import MODELS


def _positive_ints(name: str, values, allow_empty: bool) -> tuple[int, ...]:
    values = (values,) if isinstance(values, int) else tuple(values)
    if not (values or allow_empty) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise TicketlabError(f"mlp option {name} must be a tuple of positive integers, got {values!r}")
    return values


class MLP(nn.Sequential):
    def __init__(self, input_shape, hidden, num_classes: int):
        input_shape = _positive_ints("input_shape", input_shape, allow_empty=False)
        widths = [math.prod(input_shape), *_positive_ints("hidden", hidden, allow_empty=True), num_classes]
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        for i, (fan_in, fan_out) in enumerate(pairwise(widths), start=1):
            layers.append((f"fc{i}", nn.Linear(fan_in, fan_out)))
            if i < len(widths) - 1:
                layers.append((f"relu_fc{i}", nn.ReLU()))
        super().__init__(OrderedDict(layers))
        self.input_shape = input_shape
        glorot_normal_(self)


@MODELS.register("mlp", input_shape=(784,), num_classes=10)
def mlp(num_classes: int, hidden=(300, 100), input_shape=(784,)) -> nn.Module:
    """Configurable MLP (options: hidden=(300, 100), input_shape=(784,)), Glorot-normal init."""
    return MLP(input_shape, hidden, num_classes)
