"""Bridge to `torch.nn.utils.prune`: switch between its `weight_orig`/`weight_mask` form and our Masks in one line."""

from torch import nn
from torch.nn.utils import prune as torch_prune

from ticketlab.core.masks import Masks
from ticketlab.errors import TicketlabError


def masks_from_torch_prune(model: nn.Module, remove: bool = False) -> Masks:
    """Masks keyed `<module>.<param>` from every parameter pruned with torch.nn.utils.prune (its `<param>_mask`).

    With `remove=True` the pruning is also made permanent, so the model has plain parameters again and the masks
    can be used with every ticketlab function (`Masks.check` looks for `<module>.weight`, not `weight_orig`)."""
    found = {}
    for prefix, module in model.named_modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod):
                name = f"{prefix}.{hook._tensor_name}" if prefix else hook._tensor_name
                found[name] = getattr(module, f"{hook._tensor_name}_mask").detach().bool().clone()
    if not found:
        raise TicketlabError("the model has no parameter pruned with torch.nn.utils.prune (no '*_mask' buffers)")
    if remove:
        remove_torch_prune(model)
    return Masks(found)


def to_torch_prune(model: nn.Module, masks: Masks) -> nn.Module:
    """Attach `masks` with `torch.nn.utils.prune.custom_from_mask`, giving each module `weight_orig`/`weight_mask`.

    Use `remove_torch_prune` (or torch's `prune.remove`) to make the pruning permanent."""
    masks.check(model)
    for name, mask in masks.items():
        module_name, _, param = name.rpartition(".")
        module = model.get_submodule(module_name)
        torch_prune.custom_from_mask(module, param, mask.to(getattr(module, param).device))
    return model


def remove_torch_prune(model: nn.Module) -> nn.Module:
    """Make every torch.nn.utils.prune reparametrisation permanent (plain parameters with zeros)."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model

