"""The Adam/AdamW step of sparse layers taken in their backward pass (csrc/sparse_linear.cpp, `backward_step`): each
sparse layer steps its kept values and its bias as soon as their gradients exist, with torch's fused step (the same
bits, csrc/adam_math.h) and the optimizer's own state, so the optimizer's step has nothing left to do for them and
checkpoints read their state as before. It saves torch.optim's per-step work: 1.05-1.07x per batched LeNet-300-100
step (docs/speed.md)."""

import torch

from ticketlab.accel.batching.sparse_linear import NO_TENSOR, SparseWeight
from ticketlab.accel.kept_optimizer import count_adam_step
from ticketlab.accel.masked_adam import mirrors_torch


class StepInBackward:
    """Steps (values, bias) pairs of sparse layers with `optimizer`'s hyperparameters and state."""

    def __init__(self, optimizer: torch.optim.Optimizer, adamw: bool):
        self.optimizer, self.adamw = optimizer, adamw
        self.params: set[torch.Tensor] = set()  # the parameters stepped here (the optimizer sees no gradient)

    @classmethod
    def attach(cls, model, optimizer: torch.optim.Optimizer, masked: set[str], cfg) -> set[torch.Tensor]:
        """Let the sparse layers of `model` (a StackedModel) step their values and biases in the backward pass where
        they can: Adam/AdamW, the torch whose fused step our kernel mirrors, and biases not in `masked` (the names
        of parameters the optimizer masks itself). Returns the parameters so stepped."""
        if not (model.sparse and cfg.optimizer in ("adam", "adamw") and mirrors_torch()):
            return set()
        step = cls(optimizer, adamw=cfg.optimizer == "adamw")
        for name, weight in model.sparse.items():
            if not isinstance(weight, SparseWeight):  # sparse convolutions: stepped by the optimizer
                continue
            bias_name = name.removesuffix("weight") + "bias"
            if bias_name not in masked:
                weight.step = step
                bias = model.params.get(bias_name)
                step.params.update(p for p in (weight.values, bias) if p is not None)
        return step.params

    def arguments(self, values: torch.Tensor, bias: torch.Tensor | None) -> tuple:
        """The moments and hyperparameters `backward_step` takes for this step, counting the step in the state."""
        states = [count_adam_step(self.optimizer, p) for p in (values, bias) if p is not None]
        group = self.optimizer.param_groups[0]
        bias_moments = (states[1]["exp_avg"], states[1]["exp_avg_sq"]) if bias is not None else (NO_TENSOR, NO_TENSOR)
        return (states[0]["exp_avg"], states[0]["exp_avg_sq"], *bias_moments, states[0]["step"].item(), group["lr"],
                *group["betas"], group["weight_decay"], group["eps"], self.adamw)
