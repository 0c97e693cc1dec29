"""K copies of one architecture as one model: parameters stacked to (K, *shape), one forward pass for all copies.

Linear layers run as one batched matmul per pass (baddbmm over (K, batch, features)), each copy's product in the
orientation nn.Linear uses, with a backward of our own that writes the weight gradient as (K, out, in), the layout of
the parameter (autograd's would be transposed, and copied). On CPU, torch runs a batched matmul copy by copy on one
thread each, so every copy's numbers are bit for bit those of its own model trained with one thread (tested; with more
threads nn.Linear splits small matmuls across threads and rounds differently; a transposed, "feature-major" batched
layout was 8% faster but rounds differently, and Adam turns rounding differences in near-zero gradients into different
steps). Convolutions run copy by copy on (K, batch, channels, *spatial): a grouped convolution (groups = K) was no
faster here (convolutions are big enough alone) and rounds differently; copy by copy, a convolution computes exactly
what the copy's own model computes. When all copies see the same input (evaluation), the first Linear layer is one
GEMM over the stacked weights (the same numbers: it splits the work by rows and columns only).

Supported: nn.Sequential models (nested allowed) of Linear, Conv1d/2d, elementwise activations, pooling, Flatten and
Identity, without buffers — the MLPs and convnets of the zoo. `batchable(model)` checks a model, also by comparing one
forward pass against the model itself."""

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.accel.batching.sparse_linear import SparseWeight

ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
CONVS = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d}
SUPPORTED = (nn.Linear, nn.Flatten, *CONVS, *ELEMENTWISE, *POOLS)

RAW, IMAGE, FEATURES = "raw", "image", "features"  # layouts: (K, B, *input) | (K, B, C, *spatial) | (K, B, F)


class Unsupported(Exception):
    """The model cannot be batched (the engine then trains its copies one after another)."""


def layers(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaf modules of a (nested) nn.Sequential in forward order, with their parameter-name prefixes."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        raise Unsupported(f"{type(model).__name__} is not a plain nn.Sequential")
    out = []
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        out += layers(child, f"{path}.") if isinstance(child, nn.Sequential) else [(path, child)]
    return out


def check_structure(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = layers(model)
    if next(model.buffers(), None) is not None:
        raise Unsupported("the model has buffers (e.g. batch norm statistics)")
    for name, module in found:
        if type(module) not in SUPPORTED:
            raise Unsupported(f"layer {name} is a {type(module).__name__}")
        if isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) != (1, -1):
            raise Unsupported(f"layer {name} flattens dims {module.start_dim}..{module.end_dim}")
        if type(module) in CONVS and module.padding_mode != "zeros":
            raise Unsupported(f"layer {name} pads with {module.padding_mode!r}")
    return found


class StackedModel:
    """Stacked copies of `models` (same architecture) on `device`; `params[name]` is a leaf of shape (K, *shape)."""

    def __init__(self, models: list[nn.Module], device: torch.device | str = "cpu"):
        self.layers = check_structure(models[0])
        self.k = len(models)
        own = [dict(m.named_parameters()) for m in models]
        self.names = list(own[0])
        for i, p in enumerate(own[1:], start=1):
            if [(n, t.shape) for n, t in p.items()] != [(n, t.shape) for n, t in own[0].items()]:
                raise Unsupported(f"copy {i} has other parameters than copy 0")
        self.params = {n: torch.stack([p[n].detach() for p in own]).to(device).requires_grad_(True)
                       for n in self.names}
        self.sparse: dict[str, SparseWeight] = {}  # Linear weights trained as their kept entries (train_sparse)
        self.stale = False  # the sparse weights changed since `sync` (the trainer sets it after each step)

    def train_sparse(self, name: str, masks: torch.Tensor) -> None:
        """Train the Linear weight `name` as its kept entries under stacked `masks` (sparse_linear.py): the training
        forward pass then uses them, and the dense weight is brought up to date where the copies are read."""
        self.sparse[name] = SparseWeight(self.params[name], masks)

    def takes_feature_major(self) -> bool:
        """Whether the first layer past Flatten trains sparse: it reads a (K, B, F) input with the batch contiguous
        as is."""
        for name, module in self.layers:
            if not isinstance(module, nn.Flatten):
                return isinstance(module, nn.Linear) and f"{name}.weight" in self.sparse
        return False

    @torch.no_grad()
    def sync(self) -> None:
        """Write the sparse weights' kept entries into the dense stacked weights, if they changed since."""
        if self.stale:
            for name, weight in self.sparse.items():
                weight.write_dense(self.params[name])
            self.stale = False

    # -- copies in and out ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def write_to(self, k: int, model: nn.Module) -> nn.Module:
        """Copy k's current weights into `model` (same Parameter objects); returns the model."""
        self.sync()
        for name, p in model.named_parameters():
            p.copy_(self.params[name][k])
        return model

    # -- forward -------------------------------------------------------------------------------------------------
    def select(self, copies: list[int]) -> dict[str, torch.Tensor]:
        """The stacked parameters of some copies (a copy of them unless it is all copies in order; with the sparse
        weights then)."""
        self.sync()
        if copies == list(range(self.k)):
            return {**self.params, **self.sparse}
        index = torch.tensor(copies, device=self.params[self.names[0]].device)
        return {n: p.index_select(0, index) for n, p in self.params.items()}

    def __call__(self, x: torch.Tensor, shared: bool = False, params: dict | None = None) -> torch.Tensor:
        """Logits (K, B, classes) for per-copy inputs x (K, B, *input), or one input (B, *input) seen by all;
        `params` (from `select`) runs some of the copies only. Without `params` sparse weights train sparse."""
        params = {**self.params, **self.sparse} if params is None else params
        h, layout, fused = x, RAW, False
        for i, (name, module) in enumerate(self.layers):
            if fused:  # this ReLU ran inside the sparse layer before it
                fused = False
                continue
            relu_next = i + 1 < len(self.layers) and type(self.layers[i + 1][1]) is nn.ReLU
            h, layout, shared, fused = forward_layer(name, module, params, h, layout, shared, relu_next)
        if layout != FEATURES or shared:
            raise Unsupported("the model does not end in a Linear layer")
        return h


def forward_layer(name: str, module: nn.Module, params: dict, h: torch.Tensor, layout: str, shared: bool,
                  relu_next: bool = False):
    """One layer for all copies: (output, its layout, whether it is still one input shared by all copies, whether
    the ReLU that follows (`relu_next`) was applied with it: sparse layers fuse it in)."""
    if isinstance(module, ELEMENTWISE):
        return module(h), layout, shared, False
    k = params[next(iter(params))].shape[0]
    if isinstance(module, nn.Flatten):
        return to_features(h, layout, shared, k), FEATURES, shared, False
    if isinstance(module, POOLS):
        h = to_image(h, layout)
        return (module(h) if shared else module(h.flatten(0, 1)).unflatten(0, h.shape[:2])), IMAGE, shared, False
    w, b = params[f"{name}.weight"], (params[f"{name}.bias"] if module.bias is not None else None)
    if isinstance(module, nn.Linear):
        if layout == RAW and h.dim() == (2 if shared else 3):
            h, layout = to_features(h, layout, shared, k), FEATURES
        if layout != FEATURES:
            raise Unsupported(f"layer {name}: a Linear layer on unflattened input")
        if isinstance(w, SparseWeight):
            return w(h, b, shared, relu=relu_next), FEATURES, False, relu_next
        return linear(w, b, h, shared), FEATURES, False, False
    return conv(module, w, b, to_image(h, layout), shared), IMAGE, False, False


def linear(w: torch.Tensor, b: torch.Tensor | None, h: torch.Tensor, shared: bool) -> torch.Tensor:
    """w (K, O, F); h (K, B, F), or (B, F) when shared -> (K, B, O)."""
    if shared:  # one GEMM over the stacked weights: (B, F) @ (F, K*O)
        flat = w.reshape(-1, w.shape[-1]).t()
        out = h @ flat if b is None else torch.addmm(b.reshape(1, -1), h, flat)
        return out.view(h.shape[0], w.shape[0], w.shape[1]).transpose(0, 1)
    return BatchedLinear.apply(h, w, b)


class BatchedLinear(torch.autograd.Function):
    """h (K, B, F) @ w(K, O, F)^T + b (K, O), per copy as nn.Linear computes it; gradients laid out as w and b."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(h, w)
        ctx.has_bias = b is not None
        return matmul(h, w.mT, b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, w = ctx.saved_tensors  # as nn.Linear's backward: grad @ w, grad^T @ h, grad summed over the batch
        grad_h = matmul(grad, w) if ctx.needs_input_grad[0] else None
        return grad_h, matmul(grad.mT, h), grad.sum(1) if ctx.has_bias else None


def matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a[k] @ b[k] (+ bias[k]) for every copy k, with the numbers torch.mm / torch.addmm give: one batched matmul where
    it computes the same (tested; torch multiplies products under 400 multiply-adds, and vectors, its own way), else
    copy by copy."""
    rows, inner, cols = a.shape[1], a.shape[2], b.shape[2]
    if rows * inner * cols >= 400 and min(rows, cols) > 1:
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias.unsqueeze(1), a, b)
    if bias is None:
        return torch.stack([torch.mm(x, y) for x, y in zip(a, b, strict=True)])
    return torch.stack([torch.addmm(c, x, y) for x, y, c in zip(a, b, bias, strict=True)])


def conv(module: nn.Module, w: torch.Tensor, b: torch.Tensor | None, h: torch.Tensor, shared: bool) -> torch.Tensor:
    """w (K, O, C/g, *kernel); h (K, B, C, *spatial), or (B, C, *spatial) when shared -> (K, B, O, *spatial')."""
    fn = CONVS[type(module)]
    return torch.stack([fn(h if shared else h[k], w[k], None if b is None else b[k], module.stride, module.padding,
                           module.dilation, module.groups) for k in range(w.shape[0])])


def to_image(h: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == FEATURES:
        raise Unsupported("a convolution or pooling after a Linear layer")
    return h


def to_features(h: torch.Tensor, layout: str, shared: bool, k: int) -> torch.Tensor:
    if layout == FEATURES:
        return h
    if shared:
        return h.reshape(h.shape[0], -1)  # (B, ...) -> (B, F)
    return h.reshape(k, h.shape[1], -1)  # (K, B, ...) -> (K, B, F)


def batchable(model: nn.Module, input_shape=None) -> bool:
    """Whether `model`'s copies can train as one StackedModel: the structure is supported and one forward pass of
    two stacked copies matches the model's own on a small random input of `input_shape` (default model.input_shape)."""
    shape = tuple(input_shape or getattr(model, "input_shape", ()))
    if not shape:
        return False
    try:
        stacked = StackedModel([model, model], device=next(model.parameters()).device)
        x = torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(0)).to(stacked.params[stacked.names[0]])
        with torch.no_grad():
            ours = stacked(x)
            theirs = torch.stack([model(x[0]), model(x[1])])
    except (Unsupported, RuntimeError, StopIteration):
        return False
    return ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)
