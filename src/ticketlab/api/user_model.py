"""Your model as the lottery needs it: θ0, and fresh copies of the architecture with a given seed.

You pass either a model (its current weights are θ0) or a factory, any callable returning a new model, which is
called with torch's global generator seeded by the run's init seed. Fresh copies load saved weights (the rewind
point, a level's final weights); the random-reinitialisation baseline needs a new draw, which a factory gives by being
called with another seed, and a model by `reset_parameters()` of every submodule that holds parameters."""

import copy
from collections.abc import Callable

import torch
from torch import nn

from ticketlab.errors import TicketlabError


class UserModel:
    """`build(seed, pretrained)`: a new model drawn with `seed` (Lottery's `build`); `model`: the one for θ0."""

    def __init__(self, model: nn.Module | Callable[[], nn.Module], seed: int):
        self.factory = None if isinstance(model, nn.Module) else model
        if self.factory is not None and not callable(self.factory):
            raise TicketlabError(f"model must be a torch.nn.Module or a callable returning one, got "
                                 f"{type(model).__name__}")
        self.model = model if self.factory is None else self.draw(seed)
        if not any(p.requires_grad for p in self.model.parameters()):
            raise TicketlabError(f"model {type(self.model).__name__} has no trainable parameters")

    def draw(self, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.factory()
        if not isinstance(model, nn.Module):
            raise TicketlabError(f"the model factory returned {type(model).__name__}, not a torch.nn.Module")
        return model

    def build(self, seed: int, pretrained: bool = True) -> nn.Module:
        """A model to load weights into (pretrained=True), or a fresh random draw with `seed` (pretrained=False)."""
        if self.factory is not None:
            return self.draw(seed)
        model = copy.deepcopy(self.model)
        if not pretrained:
            reinitialise(model, seed)
        return model

    def check_reinit(self) -> None:
        """The random-reinit baseline needs a new draw: refused now, before training, if there is no way to make one."""
        if self.factory is None:
            missing = [name or type(m).__name__ for name, m in self.model.named_modules()
                       if any(True for _ in m.parameters(recurse=False)) and not hasattr(m, "reset_parameters")]
            if missing:
                raise TicketlabError(f"the random_reinit baseline redraws the weights, but module {missing[0]!r} has "
                                     f"no reset_parameters(); pass a factory (e.g. model=lambda: MyNet()) or drop "
                                     f"the baseline")


def reinitialise(model: nn.Module, seed: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if any(True for _ in module.parameters(recurse=False)):
                module.reset_parameters()
