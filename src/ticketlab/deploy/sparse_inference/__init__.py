"""Fast sparse inference: Linear (and Conv2d via im2col) layers that run sparse where that is measured faster.

`sparsify(model, masks)` returns a copy of the model in which every pruned Linear/Conv2d layer is timed, on this
machine and at its current thread count, with each kernel at each batch size of `batch_sizes`:
  dense           the layer's own dense op (F.linear / F.conv2d) on the masked weight: always a candidate
  torch-csr       torch.sparse.addmm with a CSR weight (int32 indices; MKL sparse BLAS on CPU)
  numba           our CSR kernel compiled with numba: a row-wise SpMV for one column, SpMM otherwise (the inner
                  loop runs along the batch, contiguous, so it vectorises), bias fused
  numba-parallel  the same, rows spread over numba's threads
  direct          Conv2d only: the direct sparse convolution of ticketlab.accel (C++, compiled on first use): each
                  kept weight adds its shifted input plane, no unfolded input
A sparse kernel is used for a batch size only when it beat dense by `margin` there, so a converted layer is never
slower than dense as measured; otherwise the layer stays as it was. Then runs [Flatten ->] Linear -> ReLU -> Linear
... inside an nn.Sequential may become one FusedChain, a single compiled call at batch 1 (where Python's per-module
overhead is most of a small MLP's time; each layer CSR or dense inside it, as measured), again only where measured
faster; a chain that is a whole plain Sequential becomes the model's forward. A ReLU (and a 2x2 max-pool) right after
a Conv2d that runs `direct` is applied by that kernel as it writes its output (ConvBlock). Last, the whole converted
model is timed against its dense self per batch size, going dense wherever it did not win by the margin. At run time
a batch of size B uses the choice of the measured batch size nearest to B (in log scale). Inputs that require grad,
non-float32 inputs and non-CPU tensors take the dense path. Conv2d layers need an input size: pass `example_input`
(or a model with `input_shape`) to time them on; im2col turns each into a matrix product (unfold + sparse x dense),
`direct` needs no unfolded input.

The converted model is for inference: a converted layer holds its dense layer (`.dense`, the fallback; its state
dict keys gain `.dense`) and a CSR copy of the kept weights (8 bytes per kept weight; a Conv2d timed with `direct`
also that kernel's entries, 16 bytes per kept weight and input size), so it uses more memory than the dense model,
and later changes to the weights do not reach the copy. numba's parallel kernels run on numba's own "workqueue"
thread pool unless NUMBA_THREADING_LAYER says otherwise: its OpenMP layer shares libgomp with torch and resets
torch's thread count. Compare with `torch.nn.utils.prune`, which masks but never runs faster.

Layout: convert.py (`sparsify`), kernels.py (numba kernels), csr.py (CSRWeight), layers.py (SparseLinear,
SparseConv2d), fused.py (FusedChain), conv_block.py (ConvBlock), fusing.py (which runs to fuse), timing.py
(time_calls, time_kernels), whole_model.py (the end-to-end check), choices.py (LayerChoice, the table), replace.py
(module tree edits)."""

from ticketlab.deploy.sparse_inference.choices import LayerChoice, format_choices, layer_choices
from ticketlab.deploy.sparse_inference.conv_block import ConvBlock
from ticketlab.deploy.sparse_inference.convert import sparsify
from ticketlab.deploy.sparse_inference.csr import CSRWeight
from ticketlab.deploy.sparse_inference.fused import FusedChain
from ticketlab.deploy.sparse_inference.fusing import DENSE_IN_CHAIN_MAX
from ticketlab.deploy.sparse_inference.kernels import DIRECT, KERNELS, available_kernels, numba_kernels
from ticketlab.deploy.sparse_inference.layers import SparseConv2d, SparseLayer, SparseLinear
from ticketlab.deploy.sparse_inference.timing import time_calls, time_kernels

__all__ = [
    "DENSE_IN_CHAIN_MAX", "DIRECT", "KERNELS", "ConvBlock", "CSRWeight", "FusedChain", "LayerChoice", "SparseConv2d",
    "SparseLayer", "SparseLinear", "available_kernels", "format_choices", "layer_choices", "numba_kernels", "sparsify",
    "time_calls", "time_kernels",
]
