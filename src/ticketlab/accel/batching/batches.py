"""Training batches of K copies: each copy's own batch (its plan's data order) of its own training split, as one
(K, B, *input) tensor, gathered once for copies that share a split."""

from collections.abc import Callable

import torch

from ticketlab.accel.batching.sparse_linear import kernel as sparse_kernel
from ticketlab.accel.batching.stacked import StackedModel
from ticketlab.engine.accelerator import Ticket
from ticketlab.engine.schedule import batch_indices


def gathers_feature_major(model: StackedModel, tickets: list[Ticket], augment: Callable | None) -> bool:
    """Whether batches are gathered feature-major, the layout the sparse kernel reads (sparse_linear.py): when the
    first layer trains sparse and the copies share one float32 training split, not augmented."""
    first = tickets[0].splits.train
    return (model.takes_feature_major() and augment is None and first.x.dtype == torch.float32
            and first.x.device.type == "cpu" and all(t.splits.train is first for t in tickets))


def batch(tickets: list[Ticket], step: int, device: torch.device, augment: Callable | None,
          feature_major: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """x (K, B, *input) and y (K, B): each copy's own batch of its own training split at `step`."""
    trains = [t.splits.train for t in tickets]
    idxs = [batch_indices(step, len(d.x), t.plan).to(d.x.device) for d, t in zip(trains, tickets, strict=True)]
    k, b = len(idxs), len(idxs[0])
    if all(d is trains[0] for d in trains):  # one split: one gather for all copies
        index, x = torch.cat(idxs), trains[0].x
        ys = trains[0].y.index_select(0, index).view(k, b)
        if feature_major:  # (K, B, F) as a view of (K, F, B rounded up)
            xs = sparse_kernel().gather_feature_major(x.reshape(len(x), -1).contiguous(), index, k)
            xs = xs[..., :b].transpose(1, 2)
        else:
            xs = x.index_select(0, index).view(k, b, *x.shape[1:])
    else:
        xs, ys = gather(trains, idxs)
    xs, ys = xs.to(device), ys.to(device)
    if augment is not None:  # each copy's batch with its own generator, seeded as `train` seeds it
        xs = torch.stack([augment(x, torch.Generator().manual_seed(t.plan.data_seed * 1_000_003 + step + 1))
                          for x, t in zip(xs, tickets, strict=True)])
    return xs, ys


def gather(trains: list, idxs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    xs = torch.empty(len(trains), len(idxs[0]), *trains[0].x.shape[1:], dtype=trains[0].x.dtype)
    ys = torch.empty(len(trains), len(idxs[0]), dtype=trains[0].y.dtype)
    for k, (d, idx) in enumerate(zip(trains, idxs, strict=True)):  # gathered in place: no stacking copy
        torch.index_select(d.x, 0, idx, out=xs[k])
        torch.index_select(d.y, 0, idx, out=ys[k])
    return xs, ys
