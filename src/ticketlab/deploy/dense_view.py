"""The dense equivalent of a `sparsify`d model, for tracing and export.

`sparsify` puts numba and CSR kernels in a model: SparseLinear/SparseConv2d layers, FusedChains, ConvBlocks and, for
a plain Sequential, a forward that calls the chain directly. None of these can be traced (numba runs on NumPy arrays,
so a trace records the output as a constant: the ONNX graph of one Constant node), and the converted model cannot be
deep-copied (torch's CSR tensors refuse). Each converted layer holds its dense layer, with the masked weights, as its
fallback; this view puts those back. It is a new module tree sharing the parameters: the model is not changed.
"""

import copy
from collections import OrderedDict

from torch import nn

from ticketlab.deploy.sparse_inference.conv_block import ConvBlock
from ticketlab.deploy.sparse_inference.fused import FusedChain
from ticketlab.deploy.sparse_inference.layers import SparseLayer


def dense_equivalent(model: nn.Module) -> nn.Module:
    """`model` with every sparse-inference module replaced by the dense modules it computes the same outputs as."""
    if not any(isinstance(m, SparseLayer | FusedChain | ConvBlock) for m in model.modules()):
        return model
    return _rebuild(model)


def _rebuild(module: nn.Module) -> nn.Module:
    if isinstance(module, SparseLayer):
        return module.dense
    if isinstance(module, FusedChain | ConvBlock):
        return _rebuild(module.layers)
    new = copy.copy(module)  # shallow: the same parameters and buffers, a module dict of its own
    new._modules = OrderedDict((n, None if c is None else _rebuild(c)) for n, c in module._modules.items())
    new._parameters = dict(module._parameters)
    new._buffers = dict(module._buffers)
    new.__dict__.pop("forward", None)  # the whole-chain shortcut of fusing.py, bound to the FusedChain
    new._compiled_call_impl = None
    return new
