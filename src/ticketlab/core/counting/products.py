"""MACs of the activation x activation products (matmul, @, bmm, baddbmm, 2-operand einsum,
scaled_dot_product_attention) called outside Linear/ConvNd/MHA layers, seen through a TorchFunctionMode."""

import math

import torch
from torch.overrides import TorchFunctionMode

from ticketlab.core.counting.work import _Work

_PRODUCTS = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "baddbmm", "addmm", "einsum",
             "scaled_dot_product_attention"}


def _einsum_macs(equation: str, operands) -> int:
    """MACs of a two-operand einsum: the product of the sizes of all its indices (ellipsis dims included)."""
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for spec, x in zip(inputs, operands, strict=True):
        if "..." in spec:  # name ellipsis dims from the right, so broadcast dims of both operands share a name
            free = x.dim() - (len(spec) - 3)
            spec = spec.replace("...", "".join(chr(0x100 + j) for j in reversed(range(free))))
        for letter, size in zip(spec, x.shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return math.prod(sizes.values())


def _product_macs(name: str, args, out) -> int | None:
    """MACs of an activation x activation product, or None when it is not one we count (or it was called with
    keyword tensors, which these hooks do not parse)."""
    if len(args) < (3 if name in ("baddbmm", "addmm", "scaled_dot_product_attention") else 2):
        return None
    if name == "einsum":
        operands = args[1:] if len(args) > 2 else list(args[1])
        return _einsum_macs(args[0], operands) if len(operands) == 2 else None
    if name == "scaled_dot_product_attention":
        q, k, v = args[:3]
        heads = q.numel() // (q.shape[-2] * q.shape[-1])
        return heads * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
    if not isinstance(out, torch.Tensor):
        return None
    left = args[1] if name in ("baddbmm", "addmm") else (args[1] if name == "__rmatmul__" else args[0])
    return out.numel() * left.shape[-1]


class _ProductCounter(TorchFunctionMode):
    """Counts activation x activation products outside Linear/ConvNd/MHA layers, by calling module."""

    def __init__(self, stack: list[str], inside_counted: list[int], works: dict[str, "_Work"]):
        super().__init__()
        self.stack, self.inside_counted, self.works = stack, inside_counted, works

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        if name in _PRODUCTS and not self.inside_counted[0] and self.stack:
            macs = _product_macs(name, args, out)
            if macs:
                self.works.setdefault(f"{self.stack[-1]}:products", _Work()).add(macs, macs, None)
        return out
