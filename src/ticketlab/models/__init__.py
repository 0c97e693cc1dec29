"""The model zoo: `build_model(name, num_classes, seed)` and the `MODELS` registry users extend.

Built-in names: lenet300, lenet5, mlp (MNIST-sized); conv2, conv4, conv6, resnet20, resnet56, resnet18-cifar,
resnet50-cifar, vgg16-cifar, vgg19-cifar (CIFAR-10); alexnet, vgg16, googlenet, resnet50, squeezenet (ImageNet).
Prunable layers carry the names used by Frankle & Carbin (2019) and Han et al. (2015) so their per-layer tables
address them directly.

Adding a model is one decorator (see `ticketlab.models.spec`):

    @MODELS.register("tiny", input_shape=(1, 28, 28), num_classes=10)
    def tiny(num_classes, hidden=64):
        "A two-layer MLP for MNIST."
        return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
"""

import contextlib
import inspect

import torch
from torch import nn

from ticketlab.errors import TicketlabError, closest

# Importing a family module registers it; hf imports transformers only when a language model is built.
from ticketlab.models import (  # noqa: F401
    alexnet,
    cifar_resnet,
    cifar_vgg,
    conv,
    gcn,
    googlenet,
    hf,
    lenet,
    mlp,
    resnet,
    squeezenet,
    vgg,
)
from ticketlab.models.spec import MODELS, ModelSpec

__all__ = ["MODELS", "ModelSpec", "build_model", "model_info"]


def model_info(name: str) -> ModelSpec:
    """The registered spec: `.input_shape` (no batch dim), default `.num_classes`, `.description`, `.factory`."""
    return MODELS.get(name)


def build_model(name: str, num_classes: int | None = None, seed: int = 0, device=None, **options) -> nn.Module:
    """Build model `name` with `num_classes` outputs (default: the spec's) and weights fixed by `seed`.

    The seed is applied inside a forked RNG state, so the caller's global random stream is left untouched
    and the same (name, num_classes, seed, options) always gives identical weights. `device="meta"` builds
    shapes only, without memory or initialisation cost (useful to count parameters of ImageNet nets).
    `options` go to the factory, e.g. `build_model("mlp", hidden=(100,), input_shape=(40,))`.
    The returned model has an `input_shape` attribute (one example, no batch dimension).
    """
    spec = MODELS.get(name)
    num_classes = spec.num_classes if num_classes is None else num_classes
    if not _is_int(num_classes) or num_classes < 1:
        raise TicketlabError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not _is_int(seed) or not 0 <= seed < 2**63:  # torch.manual_seed takes a 64-bit integer
        raise TicketlabError(f"seed must be a non-negative integer below 2**63, got {seed!r}")
    _check_options(spec, options)
    on_device = torch.device(device) if device is not None else contextlib.nullcontext()
    with torch.random.fork_rng(), on_device:
        torch.manual_seed(seed)
        model = spec.factory(num_classes=num_classes, **options)
    if not hasattr(model, "input_shape"):
        model.input_shape = spec.input_shape
    return model


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_options(spec: ModelSpec, options: dict) -> None:
    """A misspelt option is a user error, not a TypeError deep inside the factory."""
    params = inspect.signature(spec.factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if n != "num_classes" and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                                   p.KEYWORD_ONLY)]
    for key in options:
        if key not in allowed:
            raise TicketlabError(f"model {spec.name!r} has no option {key!r}{closest(key, allowed)}; "
                                 f"options: {', '.join(allowed) or 'none'}")
