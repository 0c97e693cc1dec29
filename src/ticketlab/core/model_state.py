"""Loading a state dict read from a file into a model, refused in one line when the architectures differ."""

from collections.abc import Mapping

import torch
from torch import nn

from ticketlab.errors import TicketlabError


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source) -> nn.Module:
    """`model.load_state_dict(state)` after `check_state`: a refused state leaves the model untouched. Returns the
    model."""
    check_state(model, state, source)
    model.load_state_dict(state)
    return model


def check_state(model: nn.Module, state: Mapping[str, torch.Tensor], source) -> None:
    """Refuse `state` unless its names and shapes are the model's: the message names the first tensor, in the
    model's order, that `source` (a file, for the message) lacks or holds in another shape, or one it holds that the
    model lacks."""
    own = model.state_dict()
    for name, t in own.items():
        if name not in state:
            raise TicketlabError(f"{source} lacks tensor {name!r} of the model (another architecture?)")
        if tuple(state[name].shape) != tuple(t.shape):
            raise TicketlabError(f"{source}: tensor {name!r} has shape {tuple(state[name].shape)}, the model "
                                 f"{tuple(t.shape)} (another architecture?)")
    extra = [n for n in state if n not in own]
    if extra:
        raise TicketlabError(f"{source} has tensor {extra[0]!r} that the model lacks (another architecture?)")
