"""A masked weight in CSR form, and the products with it that the sparse layers run (torch's or numba's)."""

import warnings

import numpy as np
import torch

from ticketlab.deploy.sparse_inference.kernels import numba_kernels


class CSRWeight:
    """A masked 2-D weight in CSR form with int32 indices, shared by torch's and numba's kernels."""

    def __init__(self, weight2d: torch.Tensor, mask2d: torch.Tensor, bias: torch.Tensor | None):
        rows, cols = weight2d.shape
        self.shape = (rows, cols)
        # Vectorised: the row-major positions of the kept weights (sorted), their values by one gather, row pointers by
        # a binary search for each row's first position, columns by one remainder (about 0.5 s for 100M weights
        # at 10% kept, as long as torch's to_sparse_csr; the 2-D nonzero plus a bool row sum took twice that)
        flat = mask2d.reshape(-1).nonzero().squeeze(1)
        self.values = weight2d.reshape(-1)[flat].contiguous()
        starts = torch.arange(rows + 1, dtype=torch.int64) * cols
        self.indptr = torch.searchsorted(flat, starts).to(torch.int32)
        # (int32 arithmetic where positions fit: half the memory traffic; int16 indices save bytes but measured
        # slower in the gather loop)
        self.indices = flat.to(torch.int32) % cols if rows * cols < 2**31 else (flat % cols).to(torch.int32)
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
