"""The entry point: `sparsify` measures each pruned layer's kernels per batch size and converts where sparse won."""

import copy

import numpy as np
import torch
from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.deploy.sparse_inference.choices import _choices
from ticketlab.deploy.sparse_inference.fused import FusedChain
from ticketlab.deploy.sparse_inference.fusing import _fuse_chains, _fuse_conv_blocks, _shortcut_whole_chain
from ticketlab.deploy.sparse_inference.kernels import DIRECT, KERNELS, available_kernels, numba_kernels
from ticketlab.deploy.sparse_inference.layers import SparseConv2d, SparseLayer, SparseLinear, _convertible
from ticketlab.deploy.sparse_inference.replace import _replace
from ticketlab.deploy.sparse_inference.timing import time_kernels
from ticketlab.deploy.sparse_inference.whole_model import _check_whole_model
from ticketlab.errors import TicketlabError


def sparsify(model: nn.Module, masks: Masks | None = None, batch_sizes=(1, 64), example_input=None,
             kernels=None, margin: float = 0.05, min_time: float = 0.05, max_density: float = 0.7,
             check_model: bool = True, fuse: bool = True) -> nn.Module:
    """A copy of `model` whose pruned Linear/Conv2d layers run the fastest kernel measured on this machine.

    masks: which weights are kept (default: the non-zero weights). batch_sizes: the batch sizes to measure and
    plan for. example_input: one batch, to learn the input size of conv layers (default: a random batch of
    `model.input_shape`; without either, convs stay dense). kernels: candidates (default: all available).
    margin: a sparse kernel must beat dense by this fraction. min_time: seconds of timing per kernel and batch
    size (at most about 4x that beyond each kernel's first call: a 100M-weight layer's calls are timed once).
    Layers denser than `max_density` are left dense without measuring. check_model: then time the whole converted
    model against its dense self at each batch size (needs example_input or input_shape) and go dense where it
    did not win by `margin` end to end. fuse: run chains [Flatten ->] Linear -> ReLU -> Linear ... of an
    nn.Sequential at batch 1 as one compiled call (FusedChain) where that was measured faster, and a ReLU (and 2x2
    max-pool) right after a Conv2d that runs the direct kernel inside that kernel's call (ConvBlock). The choices are in
    `layer_choices(model)`, the fused chains in `model.sparse_fused` ({name: (modules seconds, fused seconds)}), the
    end-to-end timings in `model.sparse_model_timings` ({batch: (dense seconds, sparse seconds)})."""
    batch_sizes = _check_batch_sizes(batch_sizes)
    kernels = _check_kernels(kernels)
    masks = masks if masks is not None else Masks.from_model_zeros(model)
    masks.check(model)
    model = copy.deepcopy(model).eval()
    example = _example(model, example_input)
    shapes = _input_shapes(model, example)
    if numba_kernels():
        import numba

        numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    convert = {name: module for name, module in model.named_modules()
               if f"{name}.weight" in masks and _worth_converting(name, module, masks[f"{name}.weight"], shapes,
                                                                   max_density)}
    # the layers to convert zero their pruned weights while compressing them: one pass over the weight, not two
    Masks({n: t for n, t in masks.items() if n.removesuffix(".weight") not in convert}).apply(model)
    choices = []
    for name, module in convert.items():
        layer = (SparseLinear if isinstance(module, nn.Linear) else SparseConv2d)(module, masks[f"{name}.weight"].cpu())
        example_shape = shapes.get(name, (module.weight.shape[1],))
        _measure(layer, example_shape, batch_sizes, kernels, margin, min_time)
        choices.append((name, layer))
        if any(k != "dense" for k in layer.plan.values()):
            _replace(model, name, layer)
    if fuse:
        _fuse_conv_blocks(model)
    model.sparse_fused = {}
    if fuse and numba_kernels() and 1 in batch_sizes:
        _fuse_chains(model, masks, margin, min_time)
        _shortcut_whole_chain(model)
    model.sparse_model_timings = {}
    if check_model and example is not None and any(isinstance(m, SparseLayer | FusedChain) for m in model.modules()):
        model.sparse_model_timings = _check_whole_model(model, example, batch_sizes, min_time, margin)
    model.sparse_choices = [c for name, layer in choices for c in _choices(name, layer)]
    for name, module in list(model.named_modules()):  # (fused chains move layers: look them up again)
        if isinstance(module, SparseLayer) and all(k == "dense" for k in module.plan.values()):
            _replace(model, name, module.dense)
    return model


def _check_batch_sizes(batch_sizes) -> tuple[int, ...]:
    sizes = tuple(batch_sizes)
    if not sizes or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in sizes):
        raise TicketlabError(f"batch_sizes must be positive integers, got {batch_sizes!r}")
    return sizes


def _check_kernels(kernels) -> tuple[str, ...]:
    allowed = (*available_kernels(), DIRECT)  # (whether DIRECT is built is asked per Conv2d: asking may build it)
    if kernels is None:  # one thread: the parallel kernel is the serial one plus a thread pool's overhead
        kernels = tuple(k for k in allowed if k != "numba-parallel" or torch.get_num_threads() > 1)
    for k in kernels:
        if k not in allowed:
            missing = " (numba is not installed)" if k in KERNELS else ""
            raise TicketlabError(f"unknown or unavailable kernel {k!r}{missing}; available: {', '.join(allowed)}")
    return ("dense", *[k for k in kernels if k != "dense"])


def _example(model: nn.Module, example_input) -> torch.Tensor | None:
    if example_input is not None:
        return example_input
    shape = getattr(model, "input_shape", None)
    return None if shape is None else torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))


def _input_shapes(model: nn.Module, example_input) -> dict[str, tuple[int, ...]]:
    """Per-example input shape of every Conv2d, from one forward pass of `example_input`."""
    if example_input is None:
        return {}
    shapes, hooks = {}, []

    def record(name):
        def hook(module, args, output) -> None:
            shapes[name] = tuple(args[0].shape[1:])
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _worth_converting(name: str, module: nn.Module, mask: torch.Tensor, shapes: dict, max_density: float) -> bool:
    return (_convertible(module) and module.weight.device.type == "cpu" and module.weight.dtype == torch.float32
            and module.weight.is_contiguous() and (isinstance(module, nn.Linear) or name in shapes)
            and _density(mask) <= max_density)


def _density(mask: torch.Tensor) -> float:
    """Fraction kept, without a float copy of the mask (400 MB for a 100M-weight layer); numpy counts bools 6x
    faster than torch."""
    kept = np.count_nonzero(mask.numpy()) if mask.device.type == "cpu" else int(mask.count_nonzero())
    return kept / max(mask.numel(), 1)


def _measure(layer: SparseLayer, example_shape, batch_sizes, kernels, margin: float, min_time: float) -> None:
    generator = torch.Generator().manual_seed(0)
    for batch in batch_sizes:
        x = torch.randn(batch, *example_shape, generator=generator)
        seconds = time_kernels(layer, x, layer.candidates(kernels), min_time)
        best = min(seconds, key=seconds.__getitem__)
        layer.timings[batch] = seconds
        layer.plan[batch] = best if seconds[best] * (1 + margin) < seconds["dense"] else "dense"
