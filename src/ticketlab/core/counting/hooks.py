"""Forward hooks adding the MACs of one call of a weighted layer (Linear, ConvNd, ConvTransposeNd), a module that
declares its own (`count_macs`) or an nn.MultiheadAttention to the `_Work` of its row."""

import torch
from torch import nn

from ticketlab.core.counting.work import _Work
from ticketlab.core.masks import Masks

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
WEIGHTED_TYPES = (nn.Linear, *CONV_TYPES, *TRANSPOSED_TYPES)


def _weighted_layer_hook(work: _Work, kept: int):
    def hook(module: nn.Module, args, kwargs, output):
        x = args[0] if args else next(iter(kwargs.values()))
        if isinstance(module, TRANSPOSED_TYPES):
            positions = x.numel() // module.in_channels
        else:
            out_units = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            positions = output.numel() // out_units
        work.add(positions * module.weight.numel(), positions * kept, x)

    return hook


def _declared_hook(work: _Work, kept: dict[str, int]):
    def hook(module: nn.Module, args, output):
        dense, sparse = module.count_macs(args, output, kept)
        work.add(dense, sparse, args[0] if args else None)

    return hook


def _mha_hook(name: str, works: dict[str, _Work], kept: dict[str, int]):
    """Pre-hook on nn.MultiheadAttention: the projections and products follow from the input shapes."""

    def hook(module: nn.MultiheadAttention, args, kwargs):
        names = ("query", "key", "value")
        q, k, v = (args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names))
        e = module.embed_dim
        batch = 1 if q.dim() == 2 else q.shape[0 if module.batch_first else 1]
        target = q.shape[-2] if q.dim() == 2 else q.shape[1 if module.batch_first else 0]
        source = (k.numel() // module.kdim) // batch + (module.bias_k is not None) + module.add_zero_attn
        in_proj = works[f"{name}.in_proj"]
        for x, width, part in ((q, e, "q"), (k, module.kdim, "k"), (v, module.vdim, "v")):
            tokens = x.numel() // width
            in_proj.add(tokens * width * e, tokens * kept[part], x)
        tokens = q.numel() // e
        works[f"{name}.out_proj"].add(tokens * e * e, tokens * kept["out"], None)
        products = 2 * batch * target * source * e  # QK^T and AV over all heads
        works[f"{name}:products"].add(products, products, None)

    return hook


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _mha_kept(name: str, module: nn.MultiheadAttention, masks: Masks) -> dict[str, int]:
    """Kept weights of the q, k, v and output projections (a mask on in_proj_weight is split by rows)."""
    e = module.embed_dim

    def kept(param: str, weight: torch.Tensor, rows: slice = slice(None)) -> int:
        key = _join(name, param)
        return int(torch.count_nonzero(masks[key][rows])) if key in masks else weight[rows].numel()

    if module._qkv_same_embed_dim:
        parts = {p: kept("in_proj_weight", module.in_proj_weight, slice(i * e, (i + 1) * e))
                 for i, p in enumerate("qkv")}
    else:
        parts = {p: kept(f"{p}_proj_weight", getattr(module, f"{p}_proj_weight")) for p in "qkv"}
    return {**parts, "out": kept("out_proj.weight", module.out_proj.weight)}
