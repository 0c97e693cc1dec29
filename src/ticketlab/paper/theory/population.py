"""The population loss f(W) = E f_N(W) of the teacher-student model in closed form (x ~ N(0, I_d)).

For Gaussian x, E[ReLU(<a, x>) ReLU(<b, x>)] = |a||b| (sin θ + (π - θ) cos θ) / (2π), θ the angle between a and b
(the arc-cosine kernel of degree 1; Cho & Saul 2009), and E[ReLU(<a, x>)²] = |a|² / 2. So
  f(W) = 1/(2K²) [Σ_jk κ(w_j, w_k) - 2 Σ_jk κ(w_j, w*_k) + Σ_jk κ(w*_j, w*_k)] + σ²/2,
exact, with no sampling error; its gradient comes from autograd. Tested against a large Monte Carlo sample.
"""

import math

import torch


def _kappa(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """(T, K, K') arc-cosine kernel between the rows of A (T, K, d) and B (T, K', d)."""
    na, nb = A.norm(dim=-1).unsqueeze(-1), B.norm(dim=-1).unsqueeze(-2)
    cos = (A @ B.transpose(1, 2)) / (na * nb).clamp_min(1e-30)
    theta = torch.arccos(cos.clamp(-1 + 1e-12, 1 - 1e-12))  # clamped: arccos' is infinite at ±1
    return na * nb * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta)) / (2 * math.pi)


def _self(A: torch.Tensor) -> torch.Tensor:
    """Σ_jk κ(a_j, a_k) with the exact diagonal |a_j|²/2 (the clamped formula is not differentiable there)."""
    K = A.shape[1]
    off = _kappa(A, A) * (1 - torch.eye(K, dtype=A.dtype))
    return off.sum((1, 2)) + 0.5 * A.pow(2).sum((1, 2))


def population_loss(W: torch.Tensor, W_star: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
    """f(W) per learner (B,)."""
    K = W.shape[1]
    cross = _kappa(W, W_star).sum((1, 2))
    return (_self(W) - 2 * cross + _self(W_star)) / (2 * K * K) + sigma**2 / 2


def population_loss_and_grad(W: torch.Tensor, W_star: torch.Tensor, sigma: float = 0.0, mask=None):
    """f(W) and its gradient (masked when a mask is given), in float64."""
    Wd = W.detach().double().requires_grad_(True)
    value = population_loss(Wd, W_star.double(), sigma)
    (grad,) = torch.autograd.grad(value.sum(), Wd)
    return value.detach(), grad * mask if mask is not None else grad
