"""How a Part-1 learner gets its mask and its starting point. Every experiment names the variant it ran.

oracle          (control) a mask of r inputs per neuron that contains the teacher's support, start at relative
                distance delta from W*: the local, given-mask setting of the theorems.
oracle-random   the same given mask, started from a random initialisation (separates the start from the mask).
oracle-spectral the same given mask, started from the moment (spectral) initialisation on it (see below).
found           the lottery-ticket pipeline: a dense student is trained from a random initialisation θ0 on the
                same samples, each neuron keeps its r largest-magnitude inputs (one-shot magnitude pruning), and
                the pruned student restarts from θ0 on that mask (rewinding). Nothing is given.
found-spectral  the found mask, started from the moment (spectral) initialisation on that mask (init.py): our
                simplified stand-in for the tensor initialisation of Zhong et al. 2017, not that method.

With a random start the student's neurons can converge to the teacher's in any order, so distances to W* are
measured after the best matching of neurons (`aligned_error`).
"""

import itertools

import torch

from ticketlab.errors import unknown
from ticketlab.paper.theory.init import moment_init, near_teacher
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.teacher import oracle_mask
from ticketlab.paper.theory.trainer import TrainSettings, train

VARIANTS = ("oracle", "oracle-random", "oracle-spectral", "found", "found-spectral")
LABELS = {"oracle": "oracle mask, start near W* (control)", "oracle-random": "oracle mask, random init",
          "oracle-spectral": "oracle mask, spectral init",
          "found": "found mask, random init (rewound)", "found-spectral": "found mask, spectral init"}


def check_variants(variants) -> None:
    for v in variants:
        if v not in VARIANTS:
            raise unknown("Part-1 variant", v, VARIANTS)


def random_init(shape, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """w_j ~ N(0, I/d) per neuron: the teacher's norm (1) in expectation, no information about it."""
    return torch.randn(shape, generator=generator, dtype=dtype) / shape[-1] ** 0.5


def _matching(W: torch.Tensor, W_star: torch.Tensor):
    """Squared distance of the best neuron matching and the matching (B, K): student j ↔ teacher π[j]."""
    K = W.shape[1]
    cost = (W.unsqueeze(2) - W_star.unsqueeze(1)).pow(2).sum(-1)  # (B, K student, K teacher)
    perms = torch.tensor(list(itertools.permutations(range(K))))  # (P, K), exhaustive: K <= 7
    total = cost[:, torch.arange(K).unsqueeze(0), perms].sum(-1)  # (B, P)
    best = total.min(1)
    return best.values, perms[best.indices]


def aligned_error(W: torch.Tensor, W_star: torch.Tensor) -> torch.Tensor:
    """||W - W*π||_F / ||W*||_F for the best permutation π of the neurons, per learner."""
    return _matching(W, W_star)[0].clamp_min(0).sqrt() / W_star.flatten(1).norm(dim=1)


def aligned(tensor: torch.Tensor, W: torch.Tensor, W_star: torch.Tensor) -> torch.Tensor:
    """A per-teacher-neuron tensor (B, K, ...) reordered to match the student's neurons."""
    perm = _matching(W, W_star)[1]
    return torch.gather(tensor, 1, perm.view(*perm.shape, *[1] * (tensor.dim() - 2)).expand_as(tensor))


def top_r_per_neuron(W: torch.Tensor, r: int) -> torch.Tensor:
    """Bool mask keeping each neuron's r largest-magnitude inputs (one-shot magnitude pruning, per neuron)."""
    picked = W.abs().topk(r, dim=-1).indices
    return torch.zeros(W.shape, dtype=torch.bool).scatter_(-1, picked, True)


def dense_student(X, y, theta0, lr: float, momentum: float, max_iters: int):
    """The dense student trained from θ0 until it stalls: the weights magnitude pruning reads."""
    settings = TrainSettings(lr=lr, momentum=momentum, max_iters=max_iters, stall_tol=1e-7)
    return train(theta0, torch.ones_like(theta0, dtype=torch.bool), X, y, settings).weights


def support_recall(mask: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Per learner: the fraction of the teacher's support covered by the mask, neurons matched by best overlap
    (each teacher neuron counted with the student neuron that covers most of it)."""
    overlap = (mask.unsqueeze(2) & support.unsqueeze(1)).sum(-1).double()  # (B, K student, K teacher)
    return overlap.amax(1).sum(1) / support.flatten(1).sum(1)


def _oracle(variant: str, teacher, X, y, rs, seed: int, key, delta: float):
    masks = [oracle_mask(teacher, r, stream(seed, "mask", r)) for r in rs]
    theta0 = random_init(teacher.weights.shape, stream(seed, "random-init", key), teacher.weights.dtype)
    starts = [near_teacher(teacher.weights, m, delta, stream(seed, "init", r, key)) if variant == "oracle"
              else moment_init(X, y, m) if variant == "oracle-spectral" else theta0 * m
              for r, m in zip(rs, masks, strict=True)]
    return masks, starts, [torch.full((teacher.trials,), float("nan"), dtype=torch.float64)] * len(rs)


def batch_learners(variants, teacher, X, y, rs, seed: int, key, delta: float, dense_cfg: dict):
    """Every (variant, r) learner of one sample set as one batch of G learners per trial (learner t·G + g; one
    dense student per trial serves both found variants). Returns the cells [(variant, r)], stacked masks and starts
    (T·G, K, d), and the support recall per cell (T, G)."""
    cells, masks, starts, recalls = [], [], [], []
    found = {}
    for v in variants:
        check_variants([v])
        if v.startswith("found") and "dense" not in found:
            theta0 = random_init(teacher.weights.shape, stream(seed, "random-init", key), teacher.weights.dtype)
            found["theta0"], found["dense"] = theta0, dense_student(X, y, theta0, **dense_cfg)
        if v.startswith("found"):
            m = [top_r_per_neuron(found["dense"], r) for r in rs]
            s = [found["theta0"] * mk if v == "found" else moment_init(X, y, mk) for mk in m]
            rec = [support_recall(mk, teacher.support) for mk in m]
        else:
            m, s, rec = _oracle(v, teacher, X, y, rs, seed, key, delta)
        cells += [(v, r) for r in rs]
        masks += m
        starts += s
        recalls += rec
    T = teacher.trials
    stacked = lambda ts: torch.stack(ts, dim=1).reshape(T * len(ts), *ts[0].shape[1:])  # noqa: E731
    return cells, stacked(masks), stacked(starts), torch.stack(recalls, dim=1)
