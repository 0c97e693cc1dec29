"""Two-layer network over patches (and, with neighbourhoods as patches, the two-layer GNN), batched over trials:

  f(X) = (1/K) sum_k a_k (1/P) sum_p ReLU(<w_k, x_p>),   a_k = +1 for the first half of the neurons, -1 after,

hinge loss mean(max(0, 1 - y f)), only W trained (full-batch gradient descent, analytic gradient). A neuron
mask `alive` (T, K) removes whole neurons; the 1/K is over the alive neurons, as for a network built smaller.
Training stops per trial when every training margin is >= 1 (hinge loss exactly 0): "converged".
"""

from dataclasses import dataclass

import torch


def output_signs(K: int, dtype=torch.float32) -> torch.Tensor:
    return torch.where(torch.arange(K) < (K + 1) // 2, 1.0, -1.0).to(dtype)


def init_weights(trials: int, K: int, d: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """w_k ~ N(0, scale² / d · I): small, so the learned features dominate the final norms."""
    return torch.randn((trials, K, d), generator=generator) * scale / d**0.5


def forward(W, X, alive):
    """Outputs (T, N) and pre-activations (T, N, P, K)."""
    Z = torch.einsum("tnpd,tkd->tnpk", X, W)
    a = output_signs(W.shape[1], W.dtype) * alive
    return (torch.relu(Z).mean(2) * a.unsqueeze(1)).sum(-1) / alive.sum(1, keepdim=True), Z


def hinge_and_grad(W, X, y, alive):
    f, Z = forward(W, X, alive)
    margin = y * f
    violated = (margin < 1).to(W.dtype)
    N, P = X.shape[1], X.shape[2]
    coeff = -(violated * y) / N  # d loss / d f per sample
    a = output_signs(W.shape[1], W.dtype) * alive / alive.sum(1, keepdim=True)
    grad = torch.einsum("tn,tnpk,tnpd->tkd", coeff, (Z > 0).to(W.dtype), X) * (a / P).unsqueeze(-1)
    return torch.relu(1 - margin).mean(-1), grad


def error_rate(W, X, y, alive) -> torch.Tensor:
    f, _ = forward(W, X, alive)
    return (torch.sign(f) != y).double().mean(-1)


@dataclass
class PatchTrainResult:
    weights: torch.Tensor
    converged_at: torch.Tensor  # (T,) iteration at which the hinge loss hit 0, nan if never
    finite: torch.Tensor
    snapshots: list  # [(iteration, W)] every `snapshot_every` iterations (empty if 0)


def train_patchnet(W0, X, y, alive, lr: float, max_iters: int, check_every: int = 5,
                   snapshot_every: int = 0) -> PatchTrainResult:
    """Full-batch GD; step lr·K_alive (the 1/K in f would otherwise shrink every step as K grows). Trials that
    have converged (or diverged) leave the batch at the next check, so one slow trial does not keep the others
    computing."""
    T = W0.shape[0]
    full = W0 * alive.unsqueeze(-1)
    finite = torch.ones(T, dtype=torch.bool)
    converged = torch.full((T,), float("nan"))
    snapshots = [(0, full.clone())] if snapshot_every else []
    idx = torch.arange(T)  # trials still training
    W, Xs, ys, al = full.clone(), X, y, alive
    step = (lr * alive.sum(1)).view(T, 1, 1)
    it = 0
    while it < max_iters and idx.numel():
        loss, grad = hinge_and_grad(W, Xs, ys, al)
        done = loss == 0
        converged[idx[done & torch.isnan(converged[idx])]] = it
        W = W - step * grad * (~done).view(-1, 1, 1)
        it += 1
        if snapshot_every and it % snapshot_every == 0:
            full[idx] = W
            snapshots.append((it, full.clone()))
        if it % check_every == 0:
            ok = torch.isfinite(W.flatten(1).norm(dim=1))
            finite[idx[~ok]] = False
            W = torch.where(ok.view(-1, 1, 1), W, torch.zeros_like(W))
            full[idx] = W
            keep = ok & ~done
            if not bool(keep.all()):
                idx, W, Xs, ys, al, step = idx[keep], W[keep], Xs[keep], ys[keep], al[keep], step[keep]
    full[idx] = W
    return PatchTrainResult(full, converged, finite, snapshots)


def goodness(W, patterns) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron: angle (degrees) to its class-relevant pattern p_{a_k}, and whether it is "good": it responds to
    that pattern (<w_k, p_{a_k}> > 0), so the pattern's gradient reaches it through the ReLU."""
    K = W.shape[1]
    own = patterns[:, torch.where(output_signs(K) > 0, 0, 1)]  # (T, K, d)
    dot = (W * own).sum(-1)
    angle = torch.rad2deg(torch.arccos((dot / W.norm(dim=-1).clamp_min(1e-30)).clamp(-1, 1)))
    return angle, dot > 0
