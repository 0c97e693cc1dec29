"""K copies of any model as one, beyond the nn.Sequential subset of stacked.py: the model's parametric leaves are
swapped for stacked ones and its own forward runs on the copies' batches laid end to end, (K*B, ...).

Between parametric leaves a model's operations work sample by sample (activations, residual additions, pooling,
flattening from dim 1), so its own forward computes every copy's at once. A leaf with parameters or buffers sees
(K, B, ...) and runs each copy with its own tensors: Linear as one batched matmul (stacked.BatchedLinear), convolutions
copy by copy or through the sparse kernel (stacked.conv), batch norm with each copy's batch statistics and its
running statistics updated in place in the stacked buffers (stacked_norm.py), anything else as the module's own forward
on the copy's tensors (torch.func.functional_call). Each copy's numbers are then those of its own model.
Dropout is refused (its random draws would not be the copy's own); `stacked.batchable` checks the result against the
model itself."""

import copy

import torch
from torch import nn
from torch.func import functional_call

from ticketlab.accel.batching.batched_layers import CONVS, Unsupported, conv, linear
from ticketlab.accel.batching.stacked_norm import NORMS, stacked_batch_norm

RANDOM = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def stacked_template(model: nn.Module, owner) -> tuple[nn.Module, list[tuple[str, nn.Module]]]:
    """A parameter-free copy of `model` whose leaves with parameters or buffers read `owner`'s stacked tensors
    (`owner.current`, set for each call), and the model's leaf modules in registration order."""
    template = copy.deepcopy(model).to("meta")
    leaves = []
    for name, module in list(template.named_modules()):
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        if isinstance(module, RANDOM):
            raise Unsupported(f"layer {name} draws random numbers ({type(module).__name__})")
        if next(module.children(), None) is not None:
            if own:
                raise Unsupported(f"module {name or 'the model'} holds tensors of its own beside its layers")
            continue
        leaves.append((name, module))
        if own:
            parent, _, child = name.rpartition(".")
            setattr(template.get_submodule(parent), child, StackedLeaf(name, module, owner))
    if not leaves or leaves[0][0] == "":
        raise Unsupported("the model has no layers")
    return template, leaves


class StackedLeaf(nn.Module):
    """One parametric leaf for all copies: (K*B, ...) in and out, each copy's rows through its own tensors."""

    def __init__(self, name: str, module: nn.Module, owner):
        super().__init__()
        self.name, self.inner = name, module  # `inner`: on the meta device, for its settings and forward only
        self.__dict__["owner"] = owner  # not a submodule

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        tensors = self.owner.current
        k = next(iter(tensors.values())).shape[0]
        return leaf_forward(self.name, self.inner, tensors, h.unflatten(0, (k, -1))).flatten(0, 1)


def leaf_forward(name: str, module: nn.Module, tensors: dict, h: torch.Tensor) -> torch.Tensor:
    """h (K, B, ...) -> (K, B, ...) through `module` with each copy's stacked `tensors` (by full name)."""
    weight, bias = tensors.get(f"{name}.weight"), tensors.get(f"{name}.bias")
    if type(module) is nn.Linear:
        flat = h.reshape(h.shape[0], -1, h.shape[-1])  # tokens or other middle dims join the batch
        return linear_call(weight, bias, flat).reshape(*h.shape[:-1], -1)
    if type(module) in CONVS:
        return conv(module, weight, bias, h, shared=False)
    if type(module) in NORMS:
        return stacked_batch_norm(module, tensors, name, h)
    own = {local: tensors[f"{name}.{local}"].unbind(0) for local, _ in  # unbind: see batched_layers.conv
           [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]}
    return torch.stack([functional_call(module, {n: t[k] for n, t in own.items()}, (x,))
                        for k, x in enumerate(h.unbind(0))])


def linear_call(weight, bias, h: torch.Tensor) -> torch.Tensor:
    """A stacked Linear layer on (K, B, F): the sparse weight's kernel where it trains sparse, else batched matmul."""
    if callable(weight):
        return weight(h, bias)
    return linear(weight, bias, h, shared=False)
