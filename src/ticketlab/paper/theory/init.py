"""Initialisations of the learner: near the teacher, or a moment (spectral) estimate in the spirit of
Zhong et al. 2017's tensor initialisation.

Near the teacher: W0 = W* + delta * ||W*||_F * U / ||U||_F with U Gaussian on the learner's mask, so the relative
distance to the teacher is exactly delta (before masking the teacher, which the mask contains).

Moment initialisation (ours, simplified): Zhong et al. recover the span of the teacher from the second moment
M2 = E[y (x x^T - I)] and the individual directions from a higher-order tensor. For ReLU the third-order Hermite
coefficient vanishes, so we keep only the step that carries over: each neuron's direction is the top eigenvector
of M2 restricted to its own mask (for disjoint teacher supports this isolates that neuron), its sign is fixed by
the first moment M1 = E[y x] = (1/2K) sum_j w_j, and its norm is 1 (the teacher's scale). This is not the full
tensor method and is documented as such.
"""

import torch

from ticketlab.paper.theory.checks import nonnegative


def near_teacher(W_star: torch.Tensor, mask: torch.Tensor, delta: float, generator: torch.Generator) -> torch.Tensor:
    nonnegative("delta (relative initial distance)", delta)
    U = torch.randn(W_star.shape, generator=generator, dtype=W_star.dtype) * mask
    scale = delta * W_star.flatten(1).norm(dim=1) / U.flatten(1).norm(dim=1).clamp_min(1e-30)
    return W_star + scale.view(-1, 1, 1) * U


def moment_init(X: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(T, K, d) directions from M2 restricted to each neuron's mask, signs from M1, unit norms."""
    T, N, d = X.shape
    K = mask.shape[1]
    m1 = torch.einsum("tn,tnd->td", y, X) / N  # (T, d)
    m2 = torch.einsum("tn,tnd,tne->tde", y, X, X) / N - y.mean(1).view(T, 1, 1) * torch.eye(d, dtype=X.dtype)
    r = int(mask[0, 0].sum())
    idx = mask.nonzero()[:, 2].reshape(T, K, r)  # each neuron's kept inputs (the same count r for every neuron)
    rows = torch.gather(m2.unsqueeze(1).expand(T, K, d, d), 2, idx.unsqueeze(-1).expand(T, K, r, d))
    sub = torch.gather(rows, 3, idx.unsqueeze(-2).expand(T, K, r, r))  # M2 restricted to the mask: (T, K, r, r)
    _, vectors = torch.linalg.eigh(sub.double())
    top = torch.zeros(T, K, d, dtype=X.dtype).scatter_(2, idx, vectors[..., -1].to(X.dtype))  # largest eigenvalue
    sign = torch.where(torch.einsum("tkd,td->tk", top, m1) >= 0, 1.0, -1.0).to(X.dtype)
    return top * sign.unsqueeze(-1)
