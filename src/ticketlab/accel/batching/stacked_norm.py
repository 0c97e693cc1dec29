"""Batch norm of K stacked copies, each with its own parameters and statistics, without stacking: every copy's slice
of one output (and, backward, of one input gradient) is written in place by torch's own batch norm kernel
(`native_batch_norm.out`, `native_batch_norm_backward.out`), so each copy's numbers are bit for bit those of its own
nn.BatchNorm. Running each copy through the module and stacking the results instead copies every normalised
activation once forward and its gradient once backward: an extra pass over memory each way.
Hand-written because torch has no batch norm over groups of channels with a statistic per group and copy."""

import torch
from torch import nn

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def stacked_batch_norm(module: nn.Module, tensors: dict, name: str, h: torch.Tensor) -> torch.Tensor:
    """h (K, B, C, *spatial) -> (K, B, C, *spatial): each copy k as `module` (an nn.BatchNorm*d) computes it with copy
    k's stacked tensors (weight, bias, running statistics: `tensors[f"{name}.weight"]`, ...), updating its running
    statistics and batch count in place, as the module's own forward does."""
    weight, bias = tensors.get(f"{name}.weight"), tensors.get(f"{name}.bias")
    mean, var = tensors.get(f"{name}.running_mean"), tensors.get(f"{name}.running_var")
    batches = tensors.get(f"{name}.num_batches_tracked")
    momentum = 0.0 if module.momentum is None else module.momentum
    if module.training and module.track_running_stats and batches is not None:
        batches.add_(1)
        if module.momentum is None:  # a cumulative moving average: the same count in every copy
            momentum = 1.0 / float(batches[0])
    use_batch = module.training or (mean is None and var is None)
    if not torch.is_grad_enabled():  # nothing to record for a backward pass
        return StackedBatchNorm.forward(None, h, weight, bias, mean, var, use_batch, momentum, module.eps)
    return StackedBatchNorm.apply(h, weight, bias, mean, var, use_batch, momentum, module.eps)


class StackedBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, mean, var, use_batch: bool, momentum: float, eps: float):
        h = h.contiguous()
        k = h.shape[0]
        out = torch.empty_like(h)
        save_mean, save_invstd = h.new_empty(k, h.shape[2]), h.new_empty(k, h.shape[2])
        for i in range(k):
            torch.ops.aten.native_batch_norm.out(
                h[i], at(weight, i), at(bias, i), at(mean, i), at(var, i), use_batch, momentum, eps,
                out=out[i], save_mean=save_mean[i], save_invstd=save_invstd[i])
        if ctx is not None:
            ctx.save_for_backward(h, weight, mean, var, save_mean, save_invstd)
            ctx.use_batch, ctx.eps = use_batch, eps
        return out

    @staticmethod
    def backward(ctx, grad):
        h, weight, mean, var, save_mean, save_invstd = ctx.saved_tensors
        grad = grad.contiguous()
        mask = list(ctx.needs_input_grad[:3])  # input, weight, bias
        gh = torch.empty_like(h) if mask[0] else None
        gw, gb = (torch.empty_like(save_mean) if want else None for want in mask[1:])  # (K, C), as weight and bias
        for i in range(h.shape[0]):
            args = (grad[i], h[i], at(weight, i), at(mean, i), at(var, i), save_mean[i], save_invstd[i], ctx.use_batch,
                    ctx.eps, mask)
            if weight is None:  # no affine parameters: the out= form refuses outputs for them, so copy this one
                if gh is not None:
                    gh[i].copy_(torch.ops.aten.native_batch_norm_backward(*args)[0])
                continue
            torch.ops.aten.native_batch_norm_backward.out(*args, out0=at(gh, i, h[i]), out1=at(gw, i, save_mean[i]),
                                                          out2=at(gb, i, save_mean[i]))
        return gh, gw, gb, None, None, None, None, None


def at(t: torch.Tensor | None, i: int, scratch: torch.Tensor | None = None) -> torch.Tensor | None:
    """Copy i's slice of a stacked tensor (or, for an output torch will not fill, an empty one like `scratch`)."""
    if t is None:
        return None if scratch is None else scratch.new_empty(0)
    return t[i]
