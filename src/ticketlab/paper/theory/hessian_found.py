"""The `found` variant of experiment `hessian`: the mask comes from magnitude pruning, not from the teacher.

Per trial and N, on the oracle control's own N samples: a dense student is trained from a random start
(variants.dense_student), each neuron keeps its r largest-magnitude inputs (one-shot magnitude pruning,
variants.top_r_per_neuron), and the student's neurons are matched to the teacher's by weights (variants.aligned)
so each found mask sits on the teacher neuron it learned. lambda_min of the Hessian at W*⊙mask is then compared
with the population one on the same mask, exactly as for the oracle masks.

Where the mask covers the teacher's support, W*⊙mask = W* is the noiseless minimiser and the Hessian over the
mask is a principal submatrix of the dense Hessian at W*, computed once per sample set (one dense Hessian instead
of one per r keeps the run within its time budget). Where it misses part of the support, W*⊙mask is not a
stationary point (its masked gradient, recorded, is not 0): there the Gauss-Newton matrix, evaluated directly, is
the Hessian almost everywhere but describes no minimiser, so those cells do not test the claim.
"""

import math

import torch

from ticketlab.paper.theory.hessian_matrix import hessian_chunked, smallest_eigenvalue, submatrix
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.student import loss_and_grad
from ticketlab.paper.theory.teacher import sample
from ticketlab.paper.theory.variants import aligned, aligned_error, dense_student, random_init, top_r_per_neuron


def teacher_order(mask: torch.Tensor, dense: torch.Tensor, W_star: torch.Tensor) -> torch.Tensor:
    """The student's masks (T, K, d) reordered so that row k is the mask of the student neuron matched to teacher
    neuron k (the matching that minimises the weight distance, as in aligned_error)."""
    T, K, _ = W_star.shape
    teacher_of = aligned(torch.arange(K).expand(T, K), dense, W_star)  # [t, j]: the teacher neuron of student j
    student_of = teacher_of.argsort(dim=1)
    return torch.gather(mask, 1, student_of.unsqueeze(-1).expand_as(mask))


def lambda_min_at_masked_teacher(W_star, X, mask, covered, H_dense, K: int, chunk: int) -> torch.Tensor:
    """lambda_min·K² of the Hessian at W*⊙mask per trial: a submatrix of H_dense (the dense Hessian at W* on X)
    where the mask covers the support, evaluated directly at W*⊙mask (another activation pattern) elsewhere."""
    lam = torch.linalg.eigvalsh(submatrix(H_dense, mask))[:, 0] * K * K
    missed = (~covered).nonzero().flatten()
    if missed.numel():
        lam[missed] = smallest_eigenvalue(W_star[missed] * mask[missed], X[missed], mask[missed], K, chunk)
    return lam


def found_masks(s, teacher, X, y, seed: int, N: int):
    """The dense student of one sample set (from the random start the found variants of variants.py use) and its
    aligned error to W*."""
    theta0 = random_init(teacher.weights.shape, stream(seed, "random-init", N))
    dense = dense_student(X.float(), y.float(), theta0, s.dense_lr * s.K**2, s.dense_momentum, s.dense_iters)
    dense = dense.to(teacher.weights.dtype)  # float32 training: the ranking of magnitudes is all pruning reads
    return dense, aligned_error(dense, teacher.weights)


def found_rows(s, teacher, X_pop, seed: int, progress=print) -> list[dict]:
    """One row per (N, r, trial) of the found variant, on the same samples as the oracle control."""
    W_star, support = teacher.weights, teacher.support
    full = torch.ones_like(support)
    H_pop = hessian_chunked(W_star, X_pop, full, s.chunk)
    rows = []
    for N in s.Ns:
        X, y = sample(teacher, N, 0.0, stream(seed, "data", N))
        dense, dense_error = found_masks(s, teacher, X, y, seed, N)
        H = hessian_chunked(W_star, X, full, s.chunk)
        for r in s.rs:
            mask = teacher_order(top_r_per_neuron(dense, r), dense, W_star)
            covered = ~(support & ~mask).flatten(1).any(1)
            recall = (support & mask).flatten(1).sum(1) / support.flatten(1).sum(1)
            lam = lambda_min_at_masked_teacher(W_star, X, mask, covered, H, s.K, s.chunk)
            lam_pop = lambda_min_at_masked_teacher(W_star, X_pop, mask, covered, H_pop, s.K, s.chunk)
            _, grad = loss_and_grad(W_star * mask, X, y, mask)
            rows += [{"variant": "found", "r": r, "N": N, "trial": t, "r_over_N": r / N,
                      "sqrt_r_over_N": math.sqrt(r / N), "lambda_min_K2": float(lam[t]),
                      "lambda_pop_K2": float(lam_pop[t]), "lambda_ratio": float(lam[t] / lam_pop[t]),
                      "support_recall": float(recall[t]), "covers_support": bool(covered[t]),
                      "masked_gradient_norm": float(grad[t].norm()), "dense_error": float(dense_error[t])}
                     for t in range(teacher.trials)]
        progress(f"  found N={N}: dense student aligned error median {float(dense_error.median()):.3g}; masks "
                 "covering the support " + " ".join(
                     f"r={r}: {sum(row['covers_support'] for row in rows if row['N'] == N and row['r'] == r)}"
                     f"/{teacher.trials}" for r in s.rs))
    return rows
