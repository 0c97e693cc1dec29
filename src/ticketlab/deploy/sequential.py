"""Structured compaction of an nn.Sequential (the exact path of `ticketlab.deploy.compact.compact`): drop the
neurons and channels that pruning left dead, giving a smaller dense model with the same outputs.

A unit (output neuron of a Linear, output channel of a ConvNd) is dead when
  - no kept weight leaves it (its column block in the next layer is all pruned): removing it changes nothing; or
  - no kept weight enters it: its output is the constant act(bn(bias)). It is removed and that constant folded
    into the next layer's bias, which is exact when the constant reaches the next layer as a constant: the next
    layer is a Linear, or a conv without zero padding. A conv with zero padding sees the padding's zeros beside the
    constant at the borders, so such a unit is kept unless its constant is 0.
Removing units can kill more (a unit whose only kept outgoing weights led to removed units), so the passes repeat
until nothing changes. The network's inputs and final outputs are never removed.

Supported: `nn.Sequential` models (nested Sequentials are flattened) of Linear and ConvNd (groups=1) layers with,
between them, BatchNorm (sliced along, eval-mode statistics), elementwise activations, max/avg pooling, Dropout,
Flatten and Identity; Conv -> Flatten -> Linear with the spatial factor handled. Any other model (residual blocks,
custom forward methods, grouped convs, LayerNorm, attention...) goes to ticketlab.deploy.structured, the
dependency-graph path. A layer left with no unit is refused (layer collapse). Outputs are identical in eval mode.
"""

import copy
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.errors import TicketlabError

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
               nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.AdaptiveAvgPool1d,
         nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
PASSIVE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity, nn.Flatten)
SUPPORTED = "nn.Sequential of Linear/ConvNd (groups=1), BatchNorm, elementwise activations, pooling, Dropout, Flatten"


@dataclass
class Stage:
    """One Linear/ConvNd layer and the modules between it and the next layer (`after`)."""

    name: str
    layer: nn.Module
    after: list[tuple[str, nn.Module]] = field(default_factory=list)
    weight: torch.Tensor = None  # masked working copy
    bias: torch.Tensor = None
    keep: torch.Tensor = None  # bool over output units


def compact_sequential(model: nn.Module, masks: Masks) -> tuple[nn.Sequential, Masks]:
    prefix, stages = _stages(_flatten(model), masks)
    if not stages:
        raise TicketlabError(f"compact found no Linear or ConvNd layer in {type(model).__name__}")
    _check_flatten_sizes(stages)
    with torch.no_grad():
        while _sweep(stages):
            pass
        _refuse_collapse(stages)
        out, new_masks = _build(prefix, stages, masks)
    out.train(model.training)
    return out, new_masks


def sequential_supported(model: nn.Module) -> bool:
    """A plain nn.Sequential of the modules this path handles."""
    if not isinstance(model, nn.Sequential):
        return False
    try:
        _stages(_flatten(model), Masks({}))
    except TicketlabError:
        return False
    return True


def _refuse_collapse(stages: list[Stage]) -> None:
    for stage in stages:
        if not stage.keep.any():
            raise TicketlabError(f"compact: every unit of layer {stage.name!r} is dead (no kept weight in or out): "
                                 f"layer collapse; prune {stage.name!r} less (keep a minimum density per layer)")


# -- structure ------------------------------------------------------------------------------------------------
def _flatten(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    if not isinstance(model, nn.Sequential):
        raise TicketlabError(f"compact supports {SUPPORTED}; got {prefix or 'the model'} of type "
                             f"{type(model).__name__}")
    out = []
    for name, child in model.named_children():
        full = f"{prefix}.{name}" if prefix else name
        out += _flatten(child, full) if isinstance(child, nn.Sequential) else [(full, child)]
    return out


def _stages(modules, masks: Masks) -> tuple[list, list[Stage]]:
    prefix, stages = [], []
    for name, module in modules:
        if isinstance(module, LAYERS):
            if getattr(module, "groups", 1) != 1:
                raise TicketlabError(f"compact does not support grouped convolutions ({name}, groups={module.groups})")
            mask = masks.get(f"{name}.weight")
            weight = module.weight.detach().clone()
            if mask is not None:
                weight *= mask.to(weight.device)
            bias = module.bias.detach().clone() if module.bias is not None else None
            stages.append(Stage(name, module, [], weight, bias, torch.ones(weight.shape[0], dtype=torch.bool)))
        elif isinstance(module, NORMS + ACTIVATIONS + POOLS + PASSIVE):
            if isinstance(module, nn.Flatten) and module.start_dim != 1:
                raise TicketlabError(f"compact supports Flatten(start_dim=1) only; {name} has {module.start_dim}")
            (stages[-1].after if stages else prefix).append((name, module))
        else:
            raise TicketlabError(f"compact supports {SUPPORTED}; {name} is a {type(module).__name__}")
    if any(isinstance(m, NORMS) for _, m in prefix):
        raise TicketlabError("compact does not support BatchNorm before the first Linear/ConvNd layer")
    return prefix, stages


def _check_flatten_sizes(stages: list[Stage]) -> None:
    for a, b in zip(stages, stages[1:], strict=False):
        fan_in = b.weight.shape[1]
        if fan_in % a.weight.shape[0]:
            raise TicketlabError(f"{b.name} takes {fan_in} inputs, not a multiple of {a.name}'s "
                                 f"{a.weight.shape[0]} outputs")


def _block(stage: Stage, units: int) -> torch.Tensor:
    """The next layer's weight as (out, units, rest): the columns each input unit feeds (spatial factor included)."""
    return stage.weight.reshape(stage.weight.shape[0], units, -1)


# -- analysis -------------------------------------------------------------------------------------------------
def _sweep(stages: list[Stage]) -> bool:
    """One forward pass of removals and bias folds; True when something changed."""
    changed = False
    for a, b in zip(stages, stages[1:], strict=False):
        units = a.weight.shape[0]
        cols = _block(b, units)
        live = a.keep.clone()
        dead_out = ~(cols[b.keep] != 0).any(dim=2).any(dim=0)
        live &= ~dead_out
        dead_in = live & ~(a.weight.reshape(units, -1) != 0).any(dim=1)
        if dead_in.any():
            constants = _constant_outputs(a)
            if not _folds_exactly(a, b):
                dead_in &= constants == 0
        if dead_in.any():
            b.bias = _bias_or_zeros(b) + cols[:, dead_in, :].sum(dim=2) @ constants[dead_in]
            live &= ~dead_in
        gone = a.keep & ~live
        if gone.any():
            changed = True
            a.keep = live
            a.weight[gone] = 0  # a removed unit's weights no longer keep the previous layer's units alive
            cols[:, gone, :] = 0
    return changed


def _bias_or_zeros(stage: Stage) -> torch.Tensor:
    if stage.bias is None:
        return torch.zeros(stage.weight.shape[0], dtype=stage.weight.dtype, device=stage.weight.device)
    return stage.bias


def _constant_outputs(stage: Stage) -> torch.Tensor:
    """What each unit would send on with no kept incoming weight: its bias through the BatchNorm and activation
    after it (pooling, dropout and flatten leave a constant channel constant)."""
    value = _bias_or_zeros(stage).reshape(1, -1)
    for _, module in stage.after:
        if isinstance(module, NORMS):
            value = _norm_constant(module, value)
        elif isinstance(module, ACTIVATIONS):
            value = module(value)
    return value.reshape(-1)


def _norm_constant(norm: nn.Module, value: torch.Tensor) -> torch.Tensor:
    """BatchNorm of constant channels, eval mode (without running statistics a constant normalises to 0)."""
    if norm.running_mean is None:
        value = torch.zeros_like(value)
    else:
        value = (value - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        value = value * norm.weight + norm.bias
    return value


def _folds_exactly(a: Stage, b: Stage) -> bool:
    """A constant channel stays constant until b, and b adds it up the same way at every output position."""
    for _, module in a.after:
        pads = isinstance(module, POOLS[3:6]) and module.count_include_pad and _any(module.padding)
        if pads:  # average pooling over zero padding dilutes a constant at the borders
            return False
    if isinstance(b.layer, nn.Linear):
        return True
    zero_padded = b.layer.padding_mode == "zeros" and (b.layer.padding == "same" or _any(b.layer.padding))
    return not zero_padded


def _any(padding) -> bool:
    return any(padding) if isinstance(padding, tuple | list) else bool(padding)


# -- building -------------------------------------------------------------------------------------------------
def _build(prefix, stages: list[Stage], masks: Masks) -> tuple[nn.Sequential, Masks]:
    modules = [(n, copy.deepcopy(m)) for n, m in prefix]
    new_masks = {}
    keep_in = None
    for stage in stages:
        layer, mask = _slice_layer(stage, keep_in, masks.get(f"{stage.name}.weight"))
        modules.append((stage.name, layer))
        if mask is not None:
            new_masks[f"{stage.name}.weight"] = mask
        for name, module in stage.after:
            modules.append((name, _norm_slice(module, stage.keep) if isinstance(module, NORMS)
                            else copy.deepcopy(module)))
        keep_in = stage.keep
    return nn.Sequential(OrderedDict(modules)), Masks(new_masks)


def _slice_layer(stage: Stage, keep_in: torch.Tensor | None, mask: torch.Tensor | None):
    """A new layer of the same kind with only the kept output units and the columns of the kept input units."""
    old, weight = stage.layer, stage.weight
    cols = _cols(weight, keep_in)
    weight = weight[stage.keep] if keep_in is None else _take_cols(weight[stage.keep], keep_in, cols)
    mask = None if mask is None else _take_rows_cols(mask.to(weight.device), stage.keep, keep_in, cols)
    bias = stage.bias[stage.keep] if stage.bias is not None else None
    new = _empty_like_layer(old, weight, bias is not None)
    new.weight.copy_(weight)
    if bias is not None:
        new.bias.copy_(bias)
    return new, mask


def _empty_like_layer(old: nn.Module, weight: torch.Tensor, bias: bool) -> nn.Module:
    if isinstance(old, nn.Linear):
        return nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=bias, device=weight.device,
                                  dtype=weight.dtype)
    return nn.utils.skip_init(type(old), weight.shape[1], weight.shape[0], old.kernel_size, stride=old.stride,
                              padding=old.padding, dilation=old.dilation, bias=bias, padding_mode=old.padding_mode,
                              device=weight.device, dtype=weight.dtype)


def _cols(weight: torch.Tensor, keep_in: torch.Tensor | None) -> int:
    return 0 if keep_in is None else weight.shape[1] // keep_in.numel()


def _take_cols(weight: torch.Tensor, keep_in: torch.Tensor, per_unit: int) -> torch.Tensor:
    """Columns of the kept input units: a Linear after Flatten has `per_unit` columns per channel."""
    rows = weight.shape[0]
    if weight.dim() > 2:  # conv: input channels are dimension 1
        return weight[:, keep_in]
    return weight.reshape(rows, keep_in.numel(), per_unit)[:, keep_in].reshape(rows, int(keep_in.sum()) * per_unit)


def _take_rows_cols(mask, keep_out, keep_in, per_unit):
    mask = mask[keep_out]
    return mask if keep_in is None else _take_cols(mask, keep_in, per_unit)


def _norm_slice(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    """A copy of a BatchNorm restricted to the kept channels (eval-mode statistics sliced along)."""
    new = copy.deepcopy(norm)
    new.num_features = int(keep.sum())
    for name in ("weight", "bias"):
        p = getattr(norm, name)
        if p is not None:
            setattr(new, name, nn.Parameter(p.detach()[keep].clone(), requires_grad=p.requires_grad))
    for name in ("running_mean", "running_var"):
        b = getattr(norm, name)
        if b is not None:
            setattr(new, name, b[keep].clone())
    return new
