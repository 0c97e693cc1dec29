"""Fast sparse inference: Linear (and Conv2d via im2col) layers that run sparse where that is measured faster.

`sparsify(model, masks)` returns a copy of the model in which every pruned Linear/Conv2d layer is timed, on this
machine and at its current thread count, with each kernel at each batch size of `batch_sizes`:
  dense           the layer's own dense op (F.linear / F.conv2d) on the masked weight: always a candidate
  torch-csr       torch.sparse.addmm with a CSR weight (int32 indices; MKL sparse BLAS on CPU)
  numba           our CSR kernel compiled with numba: a row-wise SpMV for one column, SpMM otherwise (the inner
                  loop runs along the batch, contiguous, so it vectorises), bias fused
  numba-parallel  the same, rows spread over numba's threads
A sparse kernel is used for a batch size only when it beat dense by `margin` there, so a converted layer is never
slower than dense as measured; otherwise the layer stays as it was. Then runs [Flatten ->] Linear -> ReLU -> Linear
... inside an nn.Sequential may become one FusedChain, a single compiled call at batch 1 (where Python's per-module
overhead is most of a small MLP's time; each layer CSR or dense inside it, as measured), again only where measured
faster; a chain that is a whole plain Sequential becomes the model's forward. Last, the whole converted model is
timed against its dense self per batch size, going dense wherever it did not win by the margin. At run time a batch
of size B uses the choice of the measured batch size nearest to B (in log scale). Inputs that require grad,
non-float32 inputs and non-CPU tensors take the dense path. Conv2d layers need an input size: pass `example_input`
(or a model with `input_shape`); im2col turns each into a matrix product (unfold + sparse x dense).

The converted model is for inference: a converted layer holds its dense layer (`.dense`, the fallback; its state
dict keys gain `.dense`) and a CSR copy of the kept weights (8 bytes per kept weight), so it uses more memory than
the dense model, and later changes to the weights do not reach the copy. numba's parallel kernels run on numba's
own "workqueue" thread pool unless NUMBA_THREADING_LAYER says otherwise: its OpenMP layer shares libgomp with torch
and resets torch's thread count. Compare with `torch.nn.utils.prune`, which masks but never runs faster.
"""

import copy
import functools
import math
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import TicketlabError
from .masks import Masks

KERNELS = ("dense", "torch-csr", "numba", "numba-parallel")


# -- kernels --------------------------------------------------------------------------------------------------
try:  # optional: without numba the candidates are dense and torch-csr
    import numba
    import numpy as np

    if numba.config.THREADING_LAYER == "default":
        # numba's OpenMP layer shares libgomp with torch and resets torch's thread count; its own pool does not
        numba.config.THREADING_LAYER = "workqueue"
except ImportError:  # pragma: no cover
    numba = None


# Four plain functions, not one compiled twice: numba's on-disk cache is keyed by the Python function, so a serial
# and a parallel compilation of the same function could load each other's machine code.
def _spmv(indptr, indices, values, bias, x, out):
    """out[i] = bias[i] + sum_j values[j] * x[indices[j]] over row i's kept weights."""
    for i in range(indptr.shape[0] - 1):
        acc = np.float32(0.0)
        for j in range(indptr[i], indptr[i + 1]):
            acc += values[j] * x[indices[j]]
        out[i] = acc + bias[i]


def _spmv_parallel(indptr, indices, values, bias, x, out):
    for i in numba.prange(indptr.shape[0] - 1):
        acc = np.float32(0.0)
        for j in range(indptr[i], indptr[i + 1]):
            acc += values[j] * x[indices[j]]
        out[i] = acc + bias[i]


def _spmm(indptr, indices, values, bias, xt, out):
    """out (rows, n) = W @ xt (cols, n) + bias: the inner loop runs along n, contiguous, so it vectorises."""
    n = xt.shape[1]
    for i in range(indptr.shape[0] - 1):
        for b in range(n):
            out[i, b] = bias[i]
        for j in range(indptr[i], indptr[i + 1]):
            v = values[j]
            c = indices[j]
            for b in range(n):
                out[i, b] += v * xt[c, b]


def _spmm_parallel(indptr, indices, values, bias, xt, out):
    n = xt.shape[1]
    for i in numba.prange(indptr.shape[0] - 1):
        for b in range(n):
            out[i, b] = bias[i]
        for j in range(indptr[i], indptr[i + 1]):
            v = values[j]
            c = indices[j]
            for b in range(n):
                out[i, b] += v * xt[c, b]


def _chain_forward(meta, ints, floats, x):
    """A whole Linear(/ReLU) chain at batch 1 in one call (layout: FusedChain.pack); returns the output (1, rows).
    Row l of `meta` is layer l: (kind, rows, cols, pointers at, indices at, values at, bias at, relu). Kind 0 is CSR:
    row i's kept weights are values[k] at columns indices[k] for k from pointers[i] to pointers[i + 1]; kind 1 is
    dense, row-major. `x` is the input of any shape (flattened here); activations ping-pong between two buffers."""
    layers = meta.shape[0]
    width = 0
    for layer in range(layers - 1):
        width = max(width, meta[layer, 1])
    work = np.empty(2 * width, dtype=np.float32)
    out = np.empty((1, meta[layers - 1, 1]), dtype=np.float32)
    src = x.ravel()
    for layer in range(layers):
        kind, rows, cols, ptr, idx, val, bias, relu = (meta[layer, 0], meta[layer, 1], meta[layer, 2], meta[layer, 3],
                                                       meta[layer, 4], meta[layer, 5], meta[layer, 6], meta[layer, 7])
        dst = out[0] if layer == layers - 1 else work[(layer % 2) * width : (layer % 2) * width + rows]
        b = floats[bias : bias + rows]  # slices: no per-element index checks, so the
        if kind == 0:                                                # loops vectorise
            pointers, indices, values = ints[ptr : ptr + rows + 1], ints[idx:], floats[val:]
            for i in range(rows):
                acc = np.float32(0.0)
                for k in range(pointers[i], pointers[i + 1]):
                    acc += values[k] * src[indices[k]]
                acc += b[i]
                dst[i] = np.float32(0.0) if relu and acc < 0 else acc
        else:
            for i in range(rows):
                w = floats[val + i * cols : val + (i + 1) * cols]
                acc = np.float32(0.0)
                for j in range(cols):
                    acc += w[j] * src[j]
                acc += b[i]
                dst[i] = np.float32(0.0) if relu and acc < 0 else acc
        src = dst
    return out


@functools.cache
def numba_kernels() -> dict:
    """{(kernel, 1 for SpMV | 2 for SpMM): compiled function}, or {} when numba is not installed. Compiled
    lazily (first call per index dtype) and cached on disk by numba."""
    if numba is None:
        return {}
    options = {"fastmath": True, "cache": True, "nogil": True}
    return {
        ("numba", 1): numba.njit(**options)(_spmv), ("numba", 2): numba.njit(**options)(_spmm),
        ("numba-parallel", 1): numba.njit(parallel=True, **options)(_spmv_parallel),
        ("numba-parallel", 2): numba.njit(parallel=True, **options)(_spmm_parallel),
        "chain": numba.njit(**options)(_chain_forward),
    }


def available_kernels() -> tuple[str, ...]:
    return KERNELS if numba_kernels() else KERNELS[:2]


class CSRWeight:
    """A masked 2-D weight in CSR form with int32 indices, shared by torch's and numba's kernels."""

    def __init__(self, weight2d: torch.Tensor, mask2d: torch.Tensor, bias: torch.Tensor | None):
        rows, cols = weight2d.shape
        coords = mask2d.nonzero()
        self.shape = (rows, cols)
        self.values = weight2d[mask2d].contiguous()
        indptr = torch.zeros(rows + 1, dtype=torch.int64)
        indptr[1:] = mask2d.sum(dim=1).cumsum(0)
        self.indptr = indptr.to(torch.int32)
        self.indices = coords[:, 1].to(torch.int32)  # int16 saves bytes but measured slower in the gather loop
        self.bias = bias.detach().clone() if bias is not None else torch.zeros(rows)
        with warnings.catch_warnings():  # "sparse CSR support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            self.torch = torch.sparse_csr_tensor(self.indptr, self.indices, self.values, self.shape,
                                                 check_invariants=False)
        self._numpy = None

    def numpy_parts(self):
        if self._numpy is None:
            # unsigned views: numba then skips its negative-index wraparound, which kept the gather loops from
            # vectorising well (3x faster at 10% kept on a 784x300 layer)
            self._numpy = (self.indptr.numpy().view(np.uint32), self.indices.numpy().view(np.uint32),
                           self.values.numpy(), self.bias.numpy())
        return self._numpy

    def matvec(self, x: torch.Tensor, kernel: str) -> torch.Tensor:
        """W @ x[0] + bias for a contiguous (1, cols) float32 x; returns (1, rows)."""
        out = torch.empty(1, self.shape[0])
        numba_kernels()[kernel, 1](*self.numpy_parts(), x.numpy()[0], out.numpy()[0])
        return out

    def matmul_t(self, xt: torch.Tensor, kernel: str) -> torch.Tensor:
        """W @ xt + bias[:, None] for xt of shape (cols, n); returns (rows, n)."""
        if kernel == "torch-csr":
            return torch.sparse.addmm(self.bias.unsqueeze(1), self.torch, xt)
        xt = xt.contiguous()
        n = xt.shape[1]
        if n == 1:
            out = torch.empty(self.shape[0], dtype=xt.dtype)
            numba_kernels()[kernel, 1](*self.numpy_parts(), xt.reshape(-1).numpy(), out.numpy())
            return out.unsqueeze(1)
        out = torch.empty(self.shape[0], n, dtype=xt.dtype)
        numba_kernels()[kernel, 2](*self.numpy_parts(), xt.numpy(), out.numpy())
        return out


# -- layers ---------------------------------------------------------------------------------------------------
class SparseLayer(nn.Module):
    """Common part: the dense layer kept as the fallback, the CSR weight, and the per-batch-size plan."""

    def __init__(self, dense: nn.Module, mask: torch.Tensor):
        super().__init__()
        self.dense = dense
        weight = dense.weight.detach()
        self.density = float(mask.float().mean())
        self.csr = CSRWeight(weight.reshape(weight.shape[0], -1), mask.reshape(weight.shape[0], -1), dense.bias)
        self.plan: dict[int, str] = {}  # measured batch size -> kernel
        self.timings: dict[int, dict[str, float]] = {}  # measured batch size -> {kernel: seconds}

    def kernel_for(self, x: torch.Tensor, batch: int) -> str:
        kernel = self.plan.get(batch)
        if kernel == "dense":
            return kernel
        if kernel is None:
            if not self.plan:
                return "dense"
            kernel = self.plan[min(self.plan, key=lambda b: (abs(math.log2(b) - math.log2(max(batch, 1))), b))]
        if kernel != "dense" and (x.dtype != torch.float32 or x.device.type != "cpu"
                                  or (x.requires_grad and torch.is_grad_enabled())):
            return "dense"
        return kernel

    def extra_repr(self) -> str:
        plan = ", ".join(f"batch {b}: {k}" for b, k in sorted(self.plan.items()))
        return f"kept {100 * self.density:.1f}%, {plan or 'dense'}"


class SparseLinear(SparseLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel_for(x, x.shape[0] if x.dim() == 2 else x.numel() // max(x.shape[-1], 1))
        if kernel == "dense":  # the functional op, not the module: no second module call on the fallback path
            return F.linear(x, self.dense.weight, self.dense.bias)
        if kernel != "torch-csr" and x.dim() == 2 and x.shape[0] == 1 and x.is_contiguous():
            return self.csr.matvec(x, kernel)  # batch 1: each torch call around the kernel costs about a µs
        x2 = x.reshape(-1, x.shape[-1])
        # (rows, batch).t(): a transposed view, which the next sparse layer takes back without a copy
        return self.csr.matmul_t(x2.t(), kernel).t().reshape(*x.shape[:-1], self.csr.shape[0])


class SparseConv2d(SparseLayer):
    """im2col: unfold the input into columns (C*kh*kw, L) per example, then one sparse x dense product."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.dense
        kernel = self.kernel_for(x, x.shape[0]) if x.dim() == 4 else "dense"
        if kernel == "dense":  # only zero-padded convs are converted, so F.conv2d is the layer's own op
            return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
        batch, _, height, width = x.shape
        cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (B, C*k*k, L)
        out_h, out_w = (_out_size(s, k, p, d, st) for s, k, p, d, st in zip(
            (height, width), conv.kernel_size, conv.padding, conv.dilation, conv.stride, strict=True))
        xt = cols[0] if batch == 1 else cols.transpose(0, 1).reshape(cols.shape[1], -1)
        out = self.csr.matmul_t(xt, kernel)  # (O, B*L)
        return out.reshape(-1, batch, out_h * out_w).transpose(0, 1).reshape(batch, -1, out_h, out_w)


class FusedChain(nn.Module):
    """A run [Flatten ->] Linear -> ReLU -> Linear ... of an nn.Sequential, run at batch 1 as one compiled call: each
    Python-level module call and tensor conversion costs about a microsecond, which at batch 1 is what a small MLP
    spends most of its time on. Each layer runs CSR or, where `dense` says so, as a dense matrix-vector product
    inside the same call (at 50% kept, LeNet-300-100's layers are faster dense). Other batch sizes, and batch 1 when
    `enabled` is False, run the original modules (`self.layers`, each with its own plan)."""

    def __init__(self, layers: nn.Sequential, masks: dict[str, torch.Tensor], dense: frozenset[str] = frozenset()):
        super().__init__()
        self.layers = layers
        self.enabled = True
        children = list(layers.children())
        self.flattens = bool(children) and isinstance(children[0], nn.Flatten) and (
            children[0].start_dim, children[0].end_dim) == (1, -1)
        linears = [(n, m.dense if isinstance(m, SparseLayer) else m) for n, m in layers.named_children()
                   if isinstance(m, nn.Linear | SparseLinear)]
        relu_after = [isinstance(nxt, nn.ReLU) for m, nxt in zip(children, [*children[1:], None], strict=True)
                      if isinstance(m, nn.Linear | SparseLinear)]
        self.names = [n for n, _ in linears]
        self.dense_layers = frozenset(dense)
        self.in_features = linears[0][1].in_features
        self.meta, self.ints, self.floats = self.pack(linears, masks, relu_after)
        self.kernel = numba_kernels()["chain"]

    def pack(self, linears, masks, relu_after):
        """All layers in three flat arrays (one numba call with few arguments: each costs dispatch time): `meta`
        (int64, a row per layer), `ints` (CSR row pointers and column indices, uint32: see numpy_parts), `floats`
        (values, biases)."""
        meta, ints, floats = [], [], []
        n_ints = n_floats = 0
        for (name, m), relu in zip(linears, relu_after, strict=True):
            weight = m.weight.detach()
            bias = m.bias.detach() if m.bias is not None else torch.zeros(m.out_features)
            if name in self.dense_layers:
                parts_i, parts_f = [], [weight.contiguous().reshape(-1), bias]
                ptr = idx = 0
                kind = 1
            else:
                csr = CSRWeight(weight, masks.get(name, torch.ones_like(weight, dtype=torch.bool)), None)
                parts_i, parts_f = [csr.indptr, csr.indices], [csr.values, bias]
                ptr, idx = n_ints, n_ints + csr.indptr.numel()
                kind = 0
            val, bias_at = n_floats, n_floats + parts_f[0].numel()
            meta.append([kind, m.out_features, m.in_features, ptr, idx, val, bias_at, int(relu)])
            ints += parts_i
            floats += parts_f
            n_ints += sum(t.numel() for t in parts_i)
            n_floats += sum(t.numel() for t in parts_f)
        ints = torch.cat([t.to(torch.int32) for t in ints] or [torch.zeros(1, dtype=torch.int32)])
        return (torch.tensor(meta, dtype=torch.int64).numpy(), ints.numpy().view(np.uint32),
                torch.cat([t.to(torch.float32) for t in floats]).numpy())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (checks ordered cheapest first: at batch 1 each costs a noticeable part of the call)
        if (self.enabled and x.shape[0] == 1 and x.dtype == torch.float32 and x.is_cpu and x.numel() == self.in_features
                and (self.flattens or x.dim() == 2) and not (x.requires_grad and torch.is_grad_enabled())):
            return torch.from_numpy(self.kernel(self.meta, self.ints, self.floats,
                                                (x.detach() if x.requires_grad else x).numpy()))
        return self.layers(x)

    def extra_repr(self) -> str:
        kinds = ", ".join(f"{n} {'dense' if n in self.dense_layers else 'csr'}" for n in self.names)
        return f"batch 1 fused: {kinds}" if self.enabled else "fused call disabled"


def _out_size(size: int, kernel: int, padding: int, dilation: int, stride: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _convertible(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


# -- conversion -----------------------------------------------------------------------------------------------
@dataclass
class LayerChoice:
    name: str
    density: float
    batch: int
    kernel: str
    dense_seconds: float
    best_seconds: float
    timings: dict[str, float]

    @property
    def speedup(self) -> float:
        return self.dense_seconds / self.best_seconds


def sparsify(model: nn.Module, masks: Masks | None = None, batch_sizes=(1, 64), example_input=None,
             kernels=None, margin: float = 0.05, min_time: float = 0.05, max_density: float = 0.7,
             check_model: bool = True, fuse: bool = True) -> nn.Module:
    """A copy of `model` whose pruned Linear/Conv2d layers run the fastest kernel measured on this machine.

    masks: which weights are kept (default: the non-zero weights). batch_sizes: the batch sizes to measure and
    plan for. example_input: one batch, to learn the input size of conv layers (default: a random batch of
    `model.input_shape`; without either, convs stay dense). kernels: candidates (default: all available).
    margin: a sparse kernel must beat dense by this fraction. min_time: seconds of timing per kernel and batch
    size. Layers denser than `max_density` are left dense without measuring. check_model: then time the whole
    converted model against its dense self at each batch size (needs example_input or input_shape) and go dense
    where it did not win by `margin` end to end. fuse: run chains [Flatten ->] Linear -> ReLU -> Linear ... of an
    nn.Sequential at batch 1 as one compiled call (FusedChain) where that was measured faster. The choices are in
    `layer_choices(model)`, the fused chains in `model.sparse_fused` ({name: (modules seconds, fused seconds)}), the
    end-to-end timings in `model.sparse_model_timings` ({batch: (dense seconds, sparse seconds)})."""
    batch_sizes = _check_batch_sizes(batch_sizes)
    kernels = _check_kernels(kernels)
    masks = masks if masks is not None else Masks.from_model_zeros(model)
    masks.check(model)
    model = copy.deepcopy(model).eval()
    masks.apply(model)
    example = _example(model, example_input)
    shapes = _input_shapes(model, example)
    if numba_kernels():
        import numba

        numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    choices = []
    for name, module in list(model.named_modules()):
        mask = masks.get(f"{name}.weight")
        if mask is None or not _convertible(module) or float(mask.float().mean()) > max_density:
            continue
        if module.weight.device.type != "cpu" or module.weight.dtype != torch.float32:
            continue
        if isinstance(module, nn.Conv2d) and name not in shapes:
            continue
        layer = (SparseLinear if isinstance(module, nn.Linear) else SparseConv2d)(module, mask.cpu())
        example_shape = shapes.get(name, (module.weight.shape[1],))
        _measure(layer, example_shape, batch_sizes, kernels, margin, min_time)
        choices.append((name, layer))
        if any(k != "dense" for k in layer.plan.values()):
            _replace(model, name, layer)
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


def _shortcut_whole_chain(model: nn.Module) -> None:
    """When one FusedChain is all a plain nn.Sequential holds (LeNet-300-100: Flatten, fc1..fc3), the model's
    forward becomes the chain's: at batch 1 the Sequential's own pass over its children and the chain's module call
    were 20% of the time. The chain still falls back to its modules wherever it does not apply."""
    children = list(model.children())
    if (isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward and len(children) == 1
            and isinstance(children[0], FusedChain)):
        model.forward = children[0].forward


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _replace_run(seq: nn.Sequential, run: list[tuple[str, nn.Module]], name: str, module: nn.Module) -> None:
    """Put `module`, named `name`, where `run` (consecutive children of `seq`) was."""
    run_names = {n for n, _ in run}
    children = [(name, module) if n == run[0][0] else (n, m) for n, m in seq.named_children()
                if n == run[0][0] or n not in run_names]
    seq._modules.clear()
    for n, m in children:
        seq.add_module(n, m)


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


def _check_batch_sizes(batch_sizes) -> tuple[int, ...]:
    sizes = tuple(batch_sizes)
    if not sizes or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in sizes):
        raise TicketlabError(f"batch_sizes must be positive integers, got {batch_sizes!r}")
    return sizes


def _check_kernels(kernels) -> tuple[str, ...]:
    allowed = available_kernels()
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


def _measure(layer: SparseLayer, example_shape, batch_sizes, kernels, margin: float, min_time: float) -> None:
    generator = torch.Generator().manual_seed(0)
    for batch in batch_sizes:
        x = torch.randn(batch, *example_shape, generator=generator)
        seconds = time_kernels(layer, x, kernels, min_time)
        best = min(seconds, key=seconds.__getitem__)
        layer.timings[batch] = seconds
        layer.plan[batch] = best if seconds[best] * (1 + margin) < seconds["dense"] else "dense"


def time_calls(functions: dict, min_time: float = 0.05, rounds: int = 7, round_time: float = 0.002) -> dict:
    """Seconds per call of each function: the best of many short rounds that alternate between the functions.

    Interference from other processes only ever adds time, so the fastest round is the best estimate; rounds of
    about `round_time` (shorter than a scheduler time slice) make it likely that some round ran undisturbed.
    At least `rounds` rounds, more while they fit in `min_time`."""
    single, calls = {}, {}
    for name, f in functions.items():  # warm-up (numba compiles on first use) and calibration
        f()
        start = time.perf_counter()
        f()
        single[name] = max(time.perf_counter() - start, 1e-7)
        calls[name] = max(1, int(round_time / single[name]))
    per_round = sum(calls[n] * single[n] for n in functions)
    rounds = max(rounds, min(int(min_time / per_round), 10_000))
    best = dict.fromkeys(functions, math.inf)
    for _ in range(rounds):
        for name, f in functions.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                f()
            best[name] = min(best[name], (time.perf_counter() - start) / calls[name])
    return best


@torch.no_grad()
def time_kernels(layer: SparseLayer, x: torch.Tensor, kernels, min_time: float = 0.05) -> dict[str, float]:
    """Seconds per call of `layer` on `x` with each kernel."""
    plan = layer.plan

    def run(kernel):
        def call():
            layer.plan = {x.shape[0]: kernel}
            layer(x)
        return call

    try:
        return time_calls({k: run(k) for k in kernels}, min_time)
    finally:
        layer.plan = plan


@torch.no_grad()
def _check_whole_model(model: nn.Module, example: torch.Tensor, batch_sizes, min_time: float,
                       margin: float = 0.0) -> dict:
    """Time the converted model against the same model with its original dense layers, at each batch size; where the
    converted one is not faster by `margin` end to end (kernels that won alone can lose in sequence), its layers go
    dense."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, SparseLayer)}
    chains = [m for m in model.modules() if isinstance(m, FusedChain)]
    chains_lost = False  # a fused chain serves batch 1 only

    def swap(to_dense: bool) -> None:
        for name, m in layers.items():
            _replace(model, name, m.dense if to_dense else m)
        for chain in chains:
            chain.enabled = not to_dense and not chains_lost

    result = {}
    for batch in batch_sizes:
        x = example[torch.arange(batch) % example.shape[0]]
        calls = {"dense": lambda x=x: model(x), "sparse": lambda x=x: model(x)}
        best = {}
        for _ in range(3):  # a few short rounds per side, each side with its own modules in place
            for side in ("dense", "sparse"):
                swap(side == "dense")
                seconds = time_calls({side: calls[side]}, min_time / 3, rounds=3)[side]
                best[side] = min(best.get(side, math.inf), seconds)
        swap(False)
        result[batch] = (best["dense"], best["sparse"])
        if best["sparse"] * (1 + margin) >= best["dense"]:  # the margin again: a near tie is noise, not a win
            for m in layers.values():
                m.plan[batch] = "dense"
            chains_lost = chains_lost or batch == 1
    swap(False)
    return result


def _replace(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, layer)


def _choices(name: str, layer: SparseLayer) -> list[LayerChoice]:
    return [LayerChoice(name, layer.density, batch, kernel, layer.timings[batch]["dense"], layer.timings[batch][kernel],
                        layer.timings[batch]) for batch, kernel in sorted(layer.plan.items())]


def layer_choices(model: nn.Module) -> list[LayerChoice]:
    """What `sparsify` measured and chose, per measured layer and batch size (dense ones included)."""
    return list(getattr(model, "sparse_choices", []))


def format_choices(choices: list[LayerChoice]) -> str:
    lines = [f"{'layer':<12} {'kept':>6} {'batch':>5}  {'kernel':<15} {'dense us':>9} {'chosen us':>9} {'speedup':>7}"]
    for c in choices:
        lines.append(f"{c.name:<12} {100 * c.density:5.1f}% {c.batch:>5}  {c.kernel:<15} "
                     f"{1e6 * c.dense_seconds:9.1f} {1e6 * c.best_seconds:9.1f} {c.speedup:6.2f}x")
    return "\n".join(lines)
