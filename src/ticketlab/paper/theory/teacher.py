"""Teacher-student generator for the pruned one-hidden-layer ReLU network (Zhang et al., NeurIPS 2021).

Shapes carry a leading trial axis T so that all trials of a grid cell are one batched computation:
  teacher W* (T, K, d): neuron j of trial t uses r* random inputs, unit norm; output weights 1/K.
  inputs  X  (T, N, d) ~ N(0, I_d);  labels y (T, N) = (1/K) sum_j ReLU(<w*_j, x>) + sigma * noise.
"""

from dataclasses import dataclass

import torch

from ticketlab.paper.theory.checks import nonnegative, positive, teacher_shapes


@dataclass(frozen=True)
class Teacher:
    weights: torch.Tensor  # (T, K, d), zero outside the support
    support: torch.Tensor  # (T, K, d) bool, r* True per neuron

    @property
    def trials(self) -> int:
        return self.weights.shape[0]


def random_subsets(shape: tuple[int, int, int], size: int, generator: torch.Generator,
                   forced: torch.Tensor | None = None) -> torch.Tensor:
    """Bool (T, K, d) with `size` True entries per row, uniformly random but always containing `forced`."""
    scores = torch.rand(shape, generator=generator)
    if forced is not None:
        scores = scores + 2.0 * forced  # forced entries outrank every random score
    picked = scores.topk(size, dim=-1).indices
    return torch.zeros(shape, dtype=torch.bool).scatter_(-1, picked, True)


def make_teacher(trials: int, d: int, K: int, r_star: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> Teacher:
    positive("trials", trials)
    teacher_shapes(d, K, r_star)
    support = random_subsets((trials, K, d), r_star, generator)
    weights = torch.randn((trials, K, d), generator=generator, dtype=dtype) * support
    weights = weights / weights.norm(dim=-1, keepdim=True)
    return Teacher(weights, support)


def oracle_mask(teacher: Teacher, r: int, generator: torch.Generator) -> torch.Tensor:
    """A learner mask with r inputs per neuron that contains the teacher's support (r = d: dense)."""
    T, K, d = teacher.weights.shape
    teacher_shapes(d, K, int(teacher.support[0, 0].sum()), rs=[r])
    return random_subsets((T, K, d), r, generator, forced=teacher.support)


def teacher_output(weights: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """(1/K) sum_j ReLU(<w_j, x>) for every sample: (T, N)."""
    return torch.relu(X @ weights.transpose(1, 2)).mean(-1)


def sample(teacher: Teacher, N: int, sigma: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """N fresh samples per trial: X (T, N, d), y (T, N)."""
    positive("N (training samples)", N)
    nonnegative("sigma (label noise)", sigma)
    T, _, d = teacher.weights.shape
    dtype = teacher.weights.dtype
    X = torch.randn((T, N, d), generator=generator, dtype=dtype)
    y = teacher_output(teacher.weights, X)
    if sigma > 0:
        y = y + sigma * torch.randn((T, N), generator=generator, dtype=dtype)
    return X, y


def sample_bytes(trials: int, N: int, d: int, K: int, itemsize: int = 4) -> int:
    """Estimated peak bytes of training on (trials, N, d) inputs: X, its pre-activations and a few gradients."""
    return itemsize * (trials * N * d + 4 * trials * N * K + 3 * trials * N + 8 * trials * K * d)
