"""The model registry: name -> ModelSpec (factory, input shape, default number of classes, description).

Register your own model with one decorator on a factory that accepts `num_classes` (and any options):

    from ticketlab.models import MODELS

    @MODELS.register("tiny", input_shape=(1, 28, 28), num_classes=10)
    def tiny(num_classes, hidden=64):
        "A two-layer MLP for MNIST."
        return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

`build_model("tiny", num_classes=3, seed=1)` then builds it with seeded initialisation and sets
`model.input_shape` when the factory did not. The description defaults to the docstring's first line.
"""

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ticketlab.core.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]  # one example, no batch dimension: (C, H, W) or (features,)
    num_classes: int  # default; every factory takes `num_classes` so callers can change it
    description: str


class ModelRegistry(Registry[ModelSpec]):
    def register(self, name: str, *, input_shape: tuple[int, ...], num_classes: int, description: str = "",
                 replace: bool = False):
        """Decorator on a factory `f(num_classes, **options) -> nn.Module`; returns the factory unchanged."""

        def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
            doc = (factory.__doc__ or "").strip().splitlines()
            spec = ModelSpec(name, factory, tuple(input_shape), int(num_classes),
                             description or (doc[0] if doc else ""))
            super(ModelRegistry, self).register(name, replace=replace)(spec)
            return factory

        return add


MODELS = ModelRegistry("model")
