"""A training step split over the ranks: each rank's share of the global batch, its dropout seed, its loss scale,
the global mean loss, and the DDP wrapper that averages gradients."""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ticketlab.engine.distributed.group import active, comm_device, rank, world_size


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of the rows of a global batch (the shares, in rank order, make up `batch`)."""
    return torch.tensor_split(batch, world_size())[rank()] if active() else batch


def step_seed(data_seed: int, step: int) -> int:
    """The torch seed of `step` on this rank: dropout draws are a pure function of (seed, step, rank), so a resumed
    run draws what the uninterrupted one drew (one saved RNG state could not hold every rank's) and ranks differ."""
    return ((data_seed * 1_000_003 + step) * 1009 + rank()) % (2**63)


def shard_loss(logits: torch.Tensor, y: torch.Tensor, global_batch: int) -> torch.Tensor:
    """This rank's loss, scaled so that DDP's average over ranks is the mean loss of the global batch (exact also
    for the short last batch of an epoch, whose shares differ in size by one)."""
    return F.cross_entropy(logits, y, reduction="sum") * (world_size() / global_batch)


def mean_over_ranks(loss: torch.Tensor) -> torch.Tensor:
    """The global batch's mean loss from each rank's `shard_loss` (the same value on every rank)."""
    if not active():
        return loss
    total = loss.detach().clone().to(comm_device())
    dist.all_reduce(total)
    return total / world_size()


def wrap(model: nn.Module) -> nn.Module:
    """DDP around `model`: its construction broadcasts rank 0's weights and buffers, backward averages gradients."""
    if not active():
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
