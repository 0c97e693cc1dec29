"""The compute kernels: numba CSR SpMV/SpMM (serial and parallel) and the fused Linear/ReLU chain, compiled lazily."""

import functools

KERNELS = ("dense", "torch-csr", "numba", "numba-parallel")
DIRECT = "direct"  # Conv2d only: ticketlab.accel's direct sparse convolution (layers.SparseConv2d)


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


def _csr_from_mask(weight, mask, zero_pruned, indptr, indices, values):
    """A CSR weight from its (rows, cols) weight and uint8 mask in one pass, and with `zero_pruned` the weight's
    pruned entries set to zero on the way. Branch-free: every column is written and the slot advances only where
    kept (indices and values hold one spare slot)."""
    k = 0
    for i in range(mask.shape[0]):
        indptr[i] = k
        kept, row = mask[i], weight[i]
        for j in range(kept.shape[0]):
            indices[k] = j
            values[k] = row[j]
            k += kept[j]
        if zero_pruned:
            for j in range(kept.shape[0]):
                row[j] *= kept[j]
    indptr[mask.shape[0]] = k


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
        "csr": numba.njit(**options)(_csr_from_mask),
    }


def available_kernels() -> tuple[str, ...]:
    return KERNELS if numba_kernels() else KERNELS[:2]


@functools.cache
def warm_numba(kernel: str) -> None:
    """Compile (or load from numba's disk cache: ~0.4 s per process) `kernel`'s SpMV and SpMM for the argument types
    the layers pass, on a 1x1 weight, so that timing them measures the kernel and not its compilation."""
    u32, f32 = np.zeros(2, dtype=np.uint32), np.ones(1, dtype=np.float32)
    for key, f in numba_kernels().items():
        if key[0] == kernel:
            x = f32 if key[1] == 1 else np.ones((1, 2), dtype=np.float32)
            f(u32, u32[:1], f32, f32, x, np.empty_like(x))
