"""Structured compaction: remove the neurons, channels and attention heads that pruning left dead, giving a
physically smaller dense model with the same outputs (eval mode).

One entry, two paths:
  - a plain nn.Sequential of Linear/ConvNd, BatchNorm, elementwise activations, pooling, Dropout and Flatten takes
    the exact path of ticketlab.deploy.sequential, which also folds the constant output of a unit with no kept
    incoming weight through BatchNorm and Flatten into the next layer's bias (no tracing, no extra dependency);
  - any other model (residual CNNs, BERT, custom forwards) the dependency-graph path of ticketlab.deploy.structured
    (Torch-Pruning, extra `deploy`), which traces one example batch.
Both refuse a compaction that would leave a layer with no unit (layer collapse), naming the layer.
"""

import torch
from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.deploy.sequential import compact_sequential, sequential_supported
from ticketlab.errors import TicketlabError


def compact(model: nn.Module, masks: Masks | None = None, return_masks: bool = False, example_input=None):
    """A smaller dense copy of `model` without its dead units; same outputs (eval mode). `masks` default: the
    zeros of the weights. With `return_masks`, also the masks of the compacted model: (model, masks).

    A plain nn.Sequential of the supported modules takes the exact path of ticketlab.deploy.sequential (constants
    folded through Flatten and BatchNorm); any other model the dependency-graph path of
    ticketlab.deploy.structured, which traces `example_input` (default: `model.example_input()` if the model has
    one, else a random batch of its `input_shape`). A layer left with no unit at all is refused (layer collapse),
    naming the layer."""
    masks = masks if masks is not None else Masks.from_model_zeros(model)
    masks.check(model)
    if sequential_supported(model):
        out, new_masks = compact_sequential(model, masks)
    else:
        from ticketlab.deploy.structured import compact_graph  # torch-pruning only when needed

        out, new_masks = compact_graph(model, masks, _example(model, example_input))
    if hasattr(model, "input_shape"):
        out.input_shape = model.input_shape
    return (out, new_masks) if return_masks else out


def _example(model: nn.Module, example_input):
    if example_input is not None:
        return example_input
    if callable(getattr(model, "example_input", None)):
        return model.example_input(4)
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise TicketlabError(f"compact needs example_input (one batch of inputs) to trace {type(model).__name__}, "
                             "or a model with an input_shape attribute")
    return torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
