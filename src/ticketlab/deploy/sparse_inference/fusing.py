"""Where to fuse: the Linear/ReLU runs of each nn.Sequential that a FusedChain runs faster, and the Conv2d/ReLU(/pool)
runs whose convolution runs the direct kernel (ConvBlock)."""

from collections import OrderedDict

import torch
from torch import nn
from torch.nn.modules import module as _hooks

from ticketlab.core.masks import Masks
from ticketlab.deploy.sparse_inference.conv_block import ConvBlock, fusable_pool
from ticketlab.deploy.sparse_inference.fused import FusedChain
from ticketlab.deploy.sparse_inference.kernels import DIRECT
from ticketlab.deploy.sparse_inference.layers import SparseConv2d, SparseLayer, SparseLinear
from ticketlab.deploy.sparse_inference.replace import _key, _replace_run
from ticketlab.deploy.sparse_inference.timing import time_calls


def _fuse_chains(model: nn.Module, masks: Masks, margin: float, min_time: float) -> None:
    """Replace each run [Flatten] Linear (ReLU Linear)+ [ReLU] inside an nn.Sequential by a FusedChain, where at
    batch 1 it beat the run of modules as they are (with their own per-layer plans). Each layer of the chain runs
    CSR unless running it dense inside the call was measured faster."""
    for prefix, seq in list(model.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        for run in _linear_runs(list(seq.named_children())):
            layers = nn.Sequential(OrderedDict(run))
            local = {n: masks[_key(prefix, n) + ".weight"] for n, _ in run if _key(prefix, n) + ".weight" in masks}
            chain = FusedChain(layers, local)
            x = torch.randn(1, chain.in_features, generator=torch.Generator().manual_seed(0))
            chain = _choose_dense_layers(chain, layers, local, x, min_time)
            with torch.no_grad():
                t = time_calls({"modules": lambda x=x, m=layers: m(x), "fused": lambda x=x, c=chain: c(x)}, min_time)
            if t["fused"] * (1 + margin) < t["modules"]:
                model.sparse_fused[_key(prefix, chain.names[0])] = (t["modules"], t["fused"])
                _replace_run(seq, run, chain.names[0], chain)


def _fuse_conv_blocks(model: nn.Module) -> None:
    """Replace each run SparseConv2d -> ReLU [-> 2x2 MaxPool2d] inside an nn.Sequential by a ConvBlock where the
    convolution runs the direct kernel at some batch size (the block is that kernel with less to do: not timed)."""
    for _, seq in list(model.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.named_children())
        for i, (name, conv) in enumerate(children[:-1]):
            if not (isinstance(conv, SparseConv2d) and DIRECT in conv.plan.values()
                    and isinstance(children[i + 1][1], nn.ReLU)):
                continue
            end = i + 3 if i + 2 < len(children) and fusable_pool(children[i + 2][1]) else i + 2
            _replace_run(seq, children[i:end], name, ConvBlock(nn.Sequential(OrderedDict(children[i:end]))))


def _shortcut_whole_chain(model: nn.Module) -> None:
    """When one FusedChain is all a plain nn.Sequential holds (LeNet-300-100: Flatten, fc1..fc3), the model's
    forward becomes the chain's: at batch 1 the Sequential's own pass over its children and the chain's module call
    were 20% of the time. And its call skips nn.Module's call machinery while nothing hooks it (another 10%). The
    chain still falls back to its modules wherever it does not apply."""
    children = list(model.children())
    if (isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward and len(children) == 1
            and isinstance(children[0], FusedChain)):
        model.forward = children[0].forward
        # the slot torch's Module.compile fills: Module.__call__ calls it instead of _call_impl; pickling drops it
        model._compiled_call_impl = _direct_call(model, children[0])


def _direct_call(model: nn.Module, chain: FusedChain):
    """`model(x)` straight to the chain's forward, unless a hook of the model or a global module hook must run."""
    def call(*args, **kwargs):
        if (kwargs or len(args) != 1 or model._forward_hooks or model._forward_pre_hooks or model._backward_hooks
                or model._backward_pre_hooks or _hooks._global_forward_hooks or _hooks._global_forward_pre_hooks
                or _hooks._global_backward_hooks or _hooks._global_backward_pre_hooks):
            return model._call_impl(*args, **kwargs)
        return chain.forward(args[0])
    return call


DENSE_IN_CHAIN_MAX = 1 << 22  # weights: beyond this a dense copy inside the chain costs too much memory to try


@torch.no_grad()
def _choose_dense_layers(chain: FusedChain, layers: nn.Sequential, masks: dict, x: torch.Tensor,
                         min_time: float) -> FusedChain:
    """Layer by layer, run it dense inside the chain instead of CSR where that was measured faster."""
    for name, m in layers.named_children():
        linear = m.dense if isinstance(m, SparseLayer) else m
        if not isinstance(linear, nn.Linear) or linear.weight.numel() > DENSE_IN_CHAIN_MAX:
            continue
        candidate = FusedChain(layers, masks, dense=chain.dense_layers | {name})
        t = time_calls({"fused": lambda c=chain: c(x), "candidate": lambda c=candidate: c(x)}, min_time)
        if t["candidate"] < t["fused"]:
            chain = candidate
    return chain


def _linear_runs(children: list[tuple[str, nn.Module]]) -> list[list[tuple[str, nn.Module]]]:
    """Maximal runs [Flatten] Linear (ReLU Linear)+ [ReLU] among a Sequential's children (at least two Linear
    layers); a Flatten is taken in only when it flattens everything but the batch dimension."""
    runs, i = [], 0
    linear = (nn.Linear, SparseLinear)
    while i < len(children):
        if not isinstance(children[i][1], linear):
            i += 1
            continue
        j = i + 1
        while j + 1 < len(children) and isinstance(children[j][1], nn.ReLU) and isinstance(children[j + 1][1], linear):
            j += 2
        if j < len(children) and isinstance(children[j][1], nn.ReLU):
            j += 1
        if sum(isinstance(m, linear) for _, m in children[i:j]) >= 2:
            before = children[i - 1][1] if i > 0 else None
            flatten = isinstance(before, nn.Flatten) and (before.start_dim, before.end_dim) == (1, -1)
            runs.append(children[i - 1 if flatten else i : j])
        i = j
    return runs
