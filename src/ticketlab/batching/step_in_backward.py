"""The Adam/AdamW step of sparse layers taken in their backward pass (csrc/sparse_linear.cpp, `backward_step`): each
sparse layer steps its kept values and its bias as soon as their gradients exist, with torch's fused step (the same
bits, csrc/adam_math.h) and the optimizer's own state, so the optimizer's step has nothing left to do for them and
checkpoints read their state as before. It saves torch.optim's per-step work: 1.05-1.07x per batched LeNet-300-100
step (docs/speed.md)."""

import torch

from ..masked_adam import mirrors_torch
from ..optimizers import adam_state
from .sparse_linear import NO_TENSOR


class StepInBackward:
    """Steps (values, bias) pairs of sparse layers with `optimizer`'s hyperparameters and state."""

    def __init__(self, optimizer: torch.optim.Optimizer, adamw: bool):
        self.optimizer, self.adamw = optimizer, adamw
        self.params: set[torch.Tensor] = set()  # the parameters stepped here (the optimizer sees no gradient)

    @staticmethod
    def applies(cfg) -> bool:
        """Whether the step can be taken this way: Adam/AdamW, and the torch whose fused step our kernel mirrors."""
        return cfg.optimizer in ("adam", "adamw") and mirrors_torch()

    def take(self, values: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.params.update(p for p in (values, bias) if p is not None)

    def arguments(self, values: torch.Tensor, bias: torch.Tensor | None) -> tuple:
        """The moments and hyperparameters `backward_step` takes for this step, counting the step in the state."""
        states = [adam_state(self.optimizer, p) for p in (values, bias) if p is not None]
        for state in states:
            state["step"] += 1
        group = self.optimizer.param_groups[0]
        bias_moments = (states[1]["exp_avg"], states[1]["exp_avg_sq"]) if bias is not None else (NO_TENSOR, NO_TENSOR)
        return (states[0]["exp_avg"], states[0]["exp_avg_sq"], *bias_moments, states[0]["step"].item(), group["lr"],
                *group["betas"], group["weight_decay"], group["eps"], self.adamw)
