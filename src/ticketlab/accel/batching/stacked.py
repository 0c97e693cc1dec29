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

The interpreter here runs nn.Sequential models (nested allowed) of Linear, Conv1d/2d, elementwise activations,
pooling, Flatten and Identity, without buffers (the MLPs and plain convnets of the zoo); any other model (residual
blocks, batch norm, a custom forward) runs its own forward over stacked leaves (stacked_modules.py). `batchable(model)`
checks a model, also by comparing one forward pass against the model itself."""

import copy

import torch
from torch import nn

from ticketlab.accel.batching.batched_layers import CONVS, Unsupported, conv, linear
from ticketlab.accel.batching.conv_layout import pair
from ticketlab.accel.batching.kept_entries import KeptEntries
from ticketlab.accel.batching.sparse_conv import SparseConvWeight, trains_sparse_conv
from ticketlab.accel.batching.sparse_linear import SparseWeight, trains_sparse
from ticketlab.accel.batching.stacked_modules import stacked_template

ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
SUPPORTED = (nn.Linear, nn.Flatten, *CONVS, *ELEMENTWISE, *POOLS)

RAW, IMAGE, FEATURES = "raw", "image", "features"  # layouts: (K, B, *input) | (K, B, C, *spatial) | (K, B, F)


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
        try:
            self.layers, self.template = check_structure(models[0]), None
        except Unsupported:  # any other model: its own forward over stacked leaves (stacked_modules.py)
            self.template, self.layers = stacked_template(models[0], self)
        self.k = len(models)
        self.training = True  # batch norm: batch statistics (updating the running ones), else the running ones
        self.params = stack([dict(m.named_parameters()) for m in models], device, grad=True)
        self.buffers = stack([dict(m.named_buffers()) for m in models], device)
        self.names = list(self.params)
        self.current: dict[str, torch.Tensor] = {}  # the tensors of the copies a template forward runs
        self.sparse: dict[str, KeptEntries] = {}  # weights trained as their kept entries (train_sparse)
        self.stale = False  # the sparse weights changed since `sync` (the trainer sets it after each step)

    def train_sparse(self, name: str, masks: torch.Tensor, module: nn.Module) -> None:
        """Train the weight `name` of a Linear or Conv2d `module` as its kept entries under stacked `masks`
        (sparse_linear.py, sparse_conv.py): the training forward pass then uses them, and the dense weight is brought
        up to date where the copies are read."""
        weight = self.params[name]
        self.sparse[name] = (SparseWeight(weight, masks) if isinstance(module, nn.Linear) else
                             SparseConvWeight(weight, masks, module.stride, module.padding, module.dilation))

    def weights(self) -> list[tuple[str, nn.Module]]:
        """(weight name, its layer) of every Linear and convolution."""
        return [(f"{name}.weight", m) for name, m in self.layers if isinstance(m, (nn.Linear, *CONVS))]

    def takes_feature_major(self) -> bool:
        """Whether the first layer past Flatten trains sparse: it reads a (K, B, F) input with the batch contiguous
        as is."""
        if self.template is not None:  # the model's own forward takes its input as is
            return False
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
        stacked = {**self.params, **self.buffers}
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            t.copy_(stacked[name][k])
        return model

    # -- forward -------------------------------------------------------------------------------------------------
    def select(self, copies: list[int]) -> dict[str, torch.Tensor]:
        """The stacked parameters of some copies (a copy of them unless it is all copies in order; with the sparse
        weights then)."""
        self.sync()
        if copies == list(range(self.k)):
            return {**self.params, **self.buffers, **self.sparse}
        index = torch.tensor(copies, device=self.params[self.names[0]].device)
        return {n: p.index_select(0, index) for n, p in {**self.params, **self.buffers}.items()}

    def __call__(self, x: torch.Tensor, shared: bool = False, params: dict | None = None) -> torch.Tensor:
        """Logits (K, B, classes) for per-copy inputs x (K, B, *input), or one input (B, *input) seen by all;
        `params` (from `select`) runs some of the copies only. Without `params` sparse weights train sparse."""
        params = {**self.params, **self.buffers, **self.sparse} if params is None else params
        if self.template is not None:
            return self.template_forward(x, shared, params)
        h, layout, fused = x, RAW, 0
        for i, (name, module) in enumerate(self.layers):
            if fused:  # this ReLU (or max-pool) ran inside the sparse layer before it
                fused -= 1
                continue
            after = [m for _, m in self.layers[i + 1 : i + 3]]
            h, layout, shared, fused = forward_layer(name, module, params, h, layout, shared, after)
        if layout != FEATURES or shared:
            raise Unsupported("the model does not end in a Linear layer")
        return h

    def template_forward(self, x: torch.Tensor, shared: bool, tensors: dict) -> torch.Tensor:
        """The model's own forward over the stacked leaves, on the copies' batches laid end to end."""
        k = next(iter(tensors.values())).shape[0]
        h = x.expand(k, *x.shape) if shared else x
        self.current = tensors
        try:
            out = self.template.train(self.training)(h.flatten(0, 1))
        finally:
            self.current = {}
        return out.unflatten(0, (k, -1))


def trains_kept(module: nn.Module, weight: torch.Tensor, masks: torch.Tensor) -> bool:
    """Whether a Linear or Conv2d layer's stacked weight under stacked masks trains as its kept entries."""
    if isinstance(module, nn.Linear):
        return trains_sparse(weight, masks)
    return trains_sparse_conv(module, weight, masks)


def stack(per_copy: list[dict[str, torch.Tensor]], device, grad: bool = False) -> dict[str, torch.Tensor]:
    """{name: the copies' tensors stacked (K, *shape)}; refused unless every copy has the same names and shapes."""
    for i, own in enumerate(per_copy[1:], start=1):
        if [(n, t.shape) for n, t in own.items()] != [(n, t.shape) for n, t in per_copy[0].items()]:
            raise Unsupported(f"copy {i} has other parameters or buffers than copy 0")
    return {n: torch.stack([own[n].detach() for own in per_copy]).to(device).requires_grad_(grad)
            for n in per_copy[0]}


def forward_layer(name: str, module: nn.Module, params: dict, h: torch.Tensor, layout: str, shared: bool,
                  after: list[nn.Module] = ()):
    """One layer for all copies: (output, its layout, whether it is still one input shared by all copies, how many of
    the layers `after` it were applied with it: sparse layers fuse a ReLU in, sparse convolutions also a 2x2
    max-pool after the ReLU)."""
    if isinstance(module, ELEMENTWISE):
        return module(h), layout, shared, 0
    k = params[next(iter(params))].shape[0]
    if isinstance(module, nn.Flatten):
        return to_features(h, layout, shared, k), FEATURES, shared, 0
    if isinstance(module, POOLS):
        h = to_image(h, layout)
        return (module(h) if shared else module(h.flatten(0, 1)).unflatten(0, h.shape[:2])), IMAGE, shared, 0
    w, b = params[f"{name}.weight"], (params[f"{name}.bias"] if module.bias is not None else None)
    relu = len(after) > 0 and type(after[0]) is nn.ReLU
    if isinstance(module, nn.Linear):
        if layout == RAW and h.dim() == (2 if shared else 3):
            h, layout = to_features(h, layout, shared, k), FEATURES
        if layout != FEATURES:
            raise Unsupported(f"layer {name}: a Linear layer on unflattened input")
        if isinstance(w, SparseWeight):
            return w(h, b, shared, relu=relu), FEATURES, False, int(relu)
        return linear(w, b, h, shared), FEATURES, False, 0
    if torch.is_tensor(w):
        return conv(module, w, b, to_image(h, layout), shared), IMAGE, False, 0
    pool = relu and len(after) > 1 and halving_max_pool(after[1])  # a sparse convolution applies these as it writes
    return conv(module, w, b, to_image(h, layout), shared, relu, pool), IMAGE, False, int(relu) + int(pool)


def halving_max_pool(module: nn.Module) -> bool:
    """Whether `module` is nn.MaxPool2d(2): 2x2 windows, stride 2, no padding, floor mode (the fused one)."""
    if type(module) is not nn.MaxPool2d or module.ceil_mode or module.return_indices:
        return False
    shape = (pair(module.kernel_size, "max-pool kernel", 1), pair(module.stride or module.kernel_size, "stride", 1),
             pair(module.padding, "padding", 0), pair(module.dilation, "dilation", 1))
    return shape == ((2, 2), (2, 2), (0, 0), (1, 1))


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
        reference = copy.deepcopy(model).train()  # its batch norm statistics move: the user's model stays as it is
        with torch.no_grad():
            ours = stacked(x)
            theirs = torch.stack([reference(x[0]), reference(x[1])])
    except (Unsupported, RuntimeError, StopIteration):
        return False
    return ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)
