"""Gradient descent with heavy-ball momentum on the masked weights, for all trials at once.

  V <- beta * V - lr * grad f(W) * mask;   W <- W + V      (beta = 0: plain gradient descent)

W0 may hold G learners per trial of X (student.forward), trained as one batch. Full-batch by default, or mini-batch
(the same random sample indices for every trial: trials have independent data, so sharing indices costs no
independence). Each trial stops on its own when it reaches relative error eps (if a target is known), stalls, or
turns non-finite; a non-finite trial is frozen, recorded with the iteration it failed at, and must be excluded from
averages by the caller (`TrainResult.finite`).
"""

from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import nonnegative, positive
from ticketlab.paper.theory.student import loss_and_grad, relative_error


@dataclass(frozen=True)
class TrainSettings:
    lr: float
    momentum: float = 0.0
    max_iters: int = 1000
    eps: float | None = None  # stop a trial when ||W - W*|| / ||W*|| < eps
    stall_tol: float = 1e-9  # stop a trial when its weights move less than this (relative) over one check
    check_every: int = 10
    batch_size: int | None = None  # None: full batch

    def __post_init__(self):
        nonnegative("lr (step size)", self.lr)
        if not 0 <= self.momentum < 1:
            from ticketlab.errors import TicketlabError
            raise TicketlabError(f"momentum must be in [0, 1), got {self.momentum!r}")
        positive("max_iters", self.max_iters)
        positive("check_every", self.check_every)
        if self.batch_size is not None:
            positive("batch_size", self.batch_size)


@dataclass
class TrainResult:
    weights: torch.Tensor  # (T, K, d)
    iterations_to_eps: torch.Tensor  # (T,) float, nan where eps was never reached
    final_error: torch.Tensor  # (T,) relative error to the target (nan without a target or if non-finite)
    final_loss: torch.Tensor  # (T,)
    finite: torch.Tensor  # (T,) bool
    nonfinite_at: torch.Tensor  # (T,) iteration of the first non-finite check, -1 if none
    error_curve: torch.Tensor  # (checks + 1, T): relative error at iterations 0, check_every, ...
    iterations: int


def train(W0: torch.Tensor, mask: torch.Tensor, X: torch.Tensor, y: torch.Tensor, settings: TrainSettings,
          W_star: torch.Tensor | None = None, generator: torch.Generator | None = None,
          error_fn=relative_error) -> TrainResult:
    """Train B = T·G learners (G per trial of X, learner b = t·G + g). A group g leaves the batch as soon as all
    its trials have stopped, so finished learners cost nothing while slower groups continue. `error_fn(W, W*)`
    measures the distance to the target (variants.aligned_error when the neurons may come out permuted)."""
    s = settings
    B, N, T = W0.shape[0], X.shape[1], X.shape[0]
    G = B // T
    full_W = (W0 * mask).clone()
    active = torch.ones(B, dtype=torch.bool)
    finite = torch.ones(B, dtype=torch.bool)
    nonfinite_at = torch.full((B,), -1, dtype=torch.long)
    hit = torch.full((B,), float("nan"))
    error = error_fn(full_W, W_star) if W_star is not None else torch.full((B,), float("nan"))
    curve = [error.clone()]
    live = torch.arange(G)  # groups still in the batch

    def members():  # indices of the learners of the live groups, in batch order
        return (torch.arange(T).unsqueeze(1) * G + live.unsqueeze(0)).reshape(-1)

    idx = members()
    W, V, m = full_W[idx], torch.zeros_like(full_W[idx]), mask[idx]
    target = W_star[idx] if W_star is not None else None
    previous = W.clone()
    it = 0
    while it < s.max_iters and bool(active.any()):
        step = active[idx].to(W.dtype).view(-1, 1, 1)
        for _ in range(s.check_every):
            Xb, yb = X, y
            if s.batch_size is not None and s.batch_size < N:
                pick = torch.randint(N, (s.batch_size,), generator=generator)
                Xb, yb = X[:, pick], y[:, pick]
            _, grad = loss_and_grad(W, Xb, yb, m)
            V = s.momentum * V * step - s.lr * grad * step
            W = W + V
        it += s.check_every
        ok = torch.isfinite(W.flatten(1).norm(dim=1))  # also catches weights so large their norm overflows
        nonfinite_at[idx[finite[idx] & ~ok]] = it
        finite[idx] &= ok
        okv = ok.view(-1, 1, 1)
        W, V = torch.where(okv, W, torch.zeros_like(W)), torch.where(okv, V, torch.zeros_like(V))  # frozen, excluded
        moved = (W - previous).flatten(1).norm(dim=1) / W.flatten(1).norm(dim=1).clamp_min(1e-30)
        active[idx] &= ok & (moved > s.stall_tol)
        previous = W.clone()
        if target is not None:
            err = error_fn(W, target)
            err[~ok] = float("nan")
            error[idx] = err
            if s.eps is not None:
                reached = torch.isnan(hit[idx]) & (err < s.eps) & ok
                hit[idx[reached]] = it
                active[idx[reached]] = False
        curve.append(error.clone())
        still = active[idx].view(T, -1).any(0)
        if not bool(still.all()):  # drop the groups whose trials have all stopped
            full_W[idx] = W
            W, V, m, previous = (_keep_groups(t, T, still) for t in (W, V, m, previous))
            target = _keep_groups(target, T, still) if target is not None else None
            live = live[still]
            idx = members()
    full_W[idx] = W
    final_loss, _ = loss_and_grad(full_W, X, y)
    final_loss[~finite] = float("nan")
    final_error = error.clone()
    final_error[~finite] = float("nan")
    return TrainResult(full_W, hit, final_error, final_loss, finite, nonfinite_at, torch.stack(curve), it)


def _keep_groups(t: torch.Tensor, T: int, still: torch.Tensor) -> torch.Tensor:
    """The learners of the groups marked in `still` (learner order t·G + g preserved)."""
    return t.view(T, -1, *t.shape[1:])[:, still].reshape(-1, *t.shape[1:])
