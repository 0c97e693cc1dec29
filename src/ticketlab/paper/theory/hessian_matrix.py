"""The Hessian of `hessian` as a matrix: accumulated over sample chunks, its smallest eigenvalue, and the principal
submatrix on a mask (the Hessian over a mask's kept weights, read off the dense one)."""

import torch

from ticketlab.paper.theory.student import hessian_at


def hessian_chunked(W, X, mask, chunk: int) -> torch.Tensor:
    """Same as hessian_at but accumulated over sample chunks so N_pop fits in memory."""
    N = X.shape[1]
    total = None
    for start in range(0, N, chunk):
        part = hessian_at(W, X[:, start:start + chunk], mask) * X[:, start:start + chunk].shape[1]
        total = part if total is None else total + part
    return total / N


def smallest_eigenvalue(W, X, mask, K: int, chunk: int) -> torch.Tensor:
    H = hessian_chunked(W.double(), X.double(), mask, chunk)
    return torch.linalg.eigvalsh(H)[:, 0] * K * K


def submatrix(H: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(T, K·r, K·r): the rows and columns of a dense Hessian (T, K·d, K·d), neuron-major, that the mask keeps,
    in hessian_at's order. Equal to hessian_at on the mask when both are taken at the same point with the same
    activation pattern (at W* for a mask containing the support)."""
    T, K, d = mask.shape
    r = int(mask[0, 0].sum())
    index = (mask.nonzero()[:, 2].reshape(T, K, r) + torch.arange(K).view(1, K, 1) * d).reshape(T, K * r)
    rows = H.gather(1, index.unsqueeze(-1).expand(-1, -1, H.shape[2]))
    return rows.gather(2, index.unsqueeze(1).expand(-1, K * r, -1))
