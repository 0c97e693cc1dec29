"""Weight initialisations shared by the families. They draw from the global RNG, which `build_model` seeds
inside a forked RNG state, so a seed fixes every weight without disturbing the caller's random stream."""

import torch
from torch import nn

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _is_meta(model: nn.Module) -> bool:
    """Shape-only models have no values to set; meta-device `normal_` would also import torch._refs (~1 s)."""
    return any(p.is_meta for p in model.parameters())


@torch.no_grad()
def glorot_normal_(model: nn.Module) -> nn.Module:
    """Xavier/Glorot normal weights and zero biases (Frankle & Carbin 2019)."""
    if _is_meta(model):
        return model
    for module in model.modules():
        if isinstance(module, LAYERS):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                module.bias.zero_()
    return model


@torch.no_grad()
def kaiming_normal_(model: nn.Module, bn_uniform: bool = False) -> nn.Module:
    """He normal (fan_in) weights. Biases keep PyTorch's default, as in OpenLTH. BatchNorm: gamma ~ U[0, 1)
    when `bn_uniform` (OpenLTH's default for CIFAR nets), else gamma = 1; beta = 0."""
    if _is_meta(model):
        return model
    for module in model.modules():
        if isinstance(module, LAYERS):
            nn.init.kaiming_normal_(module.weight)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            if bn_uniform:
                module.weight.uniform_(0.0, 1.0)
            else:
                module.weight.fill_(1.0)
            module.bias.zero_()
    return model
