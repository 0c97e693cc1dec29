"""The learner: one-hidden-layer ReLU network with masked first-layer weights and fixed output weights 1/K.

Loss per trial: f(W) = 1/(2N) sum_n ((1/K) sum_j ReLU(<w_j, x_n>) - y_n)^2, computed for all trials at once.
The gradient is written out by hand (and checked against autograd in the tests) so training needs no graph:
  df/dw_j = 1/(N K) sum_n residual_n * 1[<w_j, x_n> > 0] * x_n        (then multiplied by the mask)
"""

import torch


def forward(W: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions (B, N) and pre-activations (B, N, K).

    W is (B, K, d) with B = T·G: G learners (e.g. G masks of one grid row) share each trial's data X (T, N, d),
    learner b using X[b // G]. One matmul then reads X once for all G learners (G = 1: one learner per trial)."""
    T, N, d = X.shape
    B, K, _ = W.shape
    G = B // T
    Z = X @ W.reshape(T, G * K, d).transpose(1, 2)  # (T, N, G·K)
    if G > 1:
        Z = Z.view(T, N, G, K).transpose(1, 2).reshape(B, N, K)
    return torch.relu(Z).mean(-1), Z


def _per_learner(y: torch.Tensor, B: int) -> torch.Tensor:
    return y if y.shape[0] == B else y.repeat_interleave(B // y.shape[0], dim=0)


def loss(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-learner empirical loss (B,)."""
    pred, _ = forward(W, X)
    return 0.5 * (pred - _per_learner(y, W.shape[0])).pow(2).mean(-1)


def loss_and_grad(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None):
    """Per-learner loss (B,) and analytic gradient (B, K, d), masked when a mask is given."""
    pred, Z = forward(W, X)
    residual = pred - _per_learner(y, W.shape[0])
    (T, N, d), (B, K, _) = X.shape, W.shape
    G = B // T
    weighted = (Z > 0).to(W.dtype) * residual.unsqueeze(-1)  # (B, N, K)
    if G > 1:
        weighted = weighted.view(T, G, N, K).transpose(1, 2).reshape(T, N, G * K)
    grad = torch.einsum("tnj,tnd->tjd", weighted, X).reshape(B, K, d) / (N * K)
    if mask is not None:
        grad = grad * mask
    return 0.5 * residual.pow(2).mean(-1), grad


def relative_error(W: torch.Tensor, W_star: torch.Tensor) -> torch.Tensor:
    """||W - W*||_F / ||W*||_F per trial (T,)."""
    return (W - W_star).flatten(1).norm(dim=1) / W_star.flatten(1).norm(dim=1)


def hessian_at(W: torch.Tensor, X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hessian of the empirical loss w.r.t. the kept weights, (T, K*r, K*r), at a point with zero residual.

    ReLU has zero curvature almost everywhere, so at zero residual (W = W* without noise) the Hessian is exactly
    the Gauss-Newton matrix J^T J / (N K^2), J[n, (j, i)] = 1[<w_j, x_n> > 0] x_n[i] over kept inputs i of j.
    Every neuron of a trial must keep the same number r of inputs."""
    T, K, d = W.shape
    N = X.shape[1]
    r = int(mask[0, 0].sum())
    index = mask.nonzero()[:, 2].reshape(T, 1, K * r)  # kept input indices, neuron-major
    active = (X @ W.transpose(1, 2) > 0).to(W.dtype)  # (T, N, K)
    J = torch.gather(X, 2, index.expand(T, N, K * r)) * active.repeat_interleave(r, dim=2)
    return J.transpose(1, 2) @ J / (N * K * K)


def kept_inputs(X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(T, N, K, r): the inputs each neuron keeps; every neuron of a trial must keep the same number r."""
    T, K, d = mask.shape
    r = int(mask[0, 0].sum())
    index = mask.nonzero()[:, 2].reshape(T, 1, K, r)
    return torch.gather(X.unsqueeze(2).expand(-1, -1, K, -1), 3, index.expand(-1, X.shape[1], -1, -1))


def smoothed_hessian(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, width: float,
                     Xk: torch.Tensor | None = None) -> torch.Tensor:
    """Hessian of the empirical loss over the kept weights, (T, K*r, K*r), with the kinks smoothed.

    Away from zero residual the a.e. Hessian (Gauss-Newton, PSD everywhere) misses what makes ReLU losses
    non-convex: the residual times the Dirac mass where a pre-activation crosses zero,
      d2f/dw_j2 += 1/(N K) sum_n residual_n delta(<w_j, x_n>) x_n x_n^T.
    delta is replaced by a box of half-width width·||w_j|| (<w_j, x> ~ N(0, ||w_j||^2) for Gaussian x), which is
    the second difference of the loss over that band. `Xk` (kept_inputs) may be passed to reuse it."""
    T, K, d = W.shape
    N = X.shape[1]
    Xk = kept_inputs(X, mask) if Xk is None else Xk
    r = Xk.shape[-1]
    Z = X @ W.transpose(1, 2)  # (T, N, K)
    residual = torch.relu(Z).mean(-1) - y  # (T, N)
    J = (Xk * (Z > 0).to(X.dtype).unsqueeze(-1)).reshape(T, N, K * r)
    H = J.transpose(1, 2) @ J / (N * K * K)
    eps = (width * W.norm(dim=2)).unsqueeze(1)  # (T, 1, K)
    band = (Z.abs() < eps).to(X.dtype) / (2 * eps) * residual.unsqueeze(-1) / (N * K)  # (T, N, K)
    per_neuron = Xk.permute(0, 2, 1, 3)  # (T, K, N, r)
    kink = (per_neuron * band.transpose(1, 2).unsqueeze(-1)).transpose(2, 3) @ per_neuron  # (T, K, r, r)
    H.view(T, K, r, K, r).diagonal(dim1=1, dim2=3).add_(kink.permute(0, 2, 3, 1))
    return H
