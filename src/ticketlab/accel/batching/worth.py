"""Whether K tickets train faster as one batched model than one after another.

Batching pays for Linear layers (batched matmuls, sparse kernels) and for convolutions that train as their kept
entries (sparse_conv.py). A dense convolution gains nothing: it runs copy by copy inside the batched model too, and
the stacking adds copies of every activation (8 Conv-6 tickets with dense layers only: 0.93x the throughput of
sequential runs, benchmarks/ticket_batching.py). So copies of a convolutional network batch only where the
convolutions left dense hold at most DENSE_CONV_SHARE of the convolutions' multiply-adds (a first layer on 3 input
channels, a 1x1 shortcut). That holds for residual networks with batch norm as well, whose batched batch norm, ReLU
and additions run slower than alone (K copies' activations do not fit in the caches) but not by as much as the
sparse convolutions save (8 ResNet-20 tickets: 1.18x the throughput of sequential runs at IMP level 7, the first
whose convolutions all train sparse, 1.24x at level 8, 1.43x at level 12).

Batched copies hold K copies' activations at once: a group batches only if K times what one copy's forward pass
saves for its backward pass fits in MEMORY_SHARE of the memory available (8 ResNet-20 copies at batch 128: 1.5 GB).
Otherwise the engine trains the copies one after another, each as `train` would alone."""

import os

import torch

from ticketlab.accel.batching.batched_layers import CONVS
from ticketlab.accel.batching.stacked import trains_kept
from ticketlab.core.counting import count
from ticketlab.engine.accelerator import Ticket

DENSE_CONV_SHARE = 0.1
MEMORY_SHARE = 0.5


def worth_batching(tickets: list[Ticket]) -> bool:
    return sparse_enough(tickets) and fits_in_memory(tickets)


def sparse_enough(tickets: list[Ticket]) -> bool:
    """Whether the convolutions the batched model would train dense hold at most DENSE_CONV_SHARE of the
    multiply-adds of all convolutions (True without convolutions)."""
    model = tickets[0].model
    convs = {name: m for name, m in model.named_modules() if type(m) in CONVS}
    if not convs:
        return True
    macs = {row.name: row.macs_dense for row in count(model).layers if row.name in convs}
    dense = sum(macs.get(name, 0) for name, m in convs.items() if not sparse(f"{name}.weight", m, tickets))
    return dense <= DENSE_CONV_SHARE * sum(macs.values())


def sparse(weight: str, module, tickets: list[Ticket]) -> bool:
    """Whether the batched model would train this convolution's weight as its kept entries."""
    if weight not in tickets[0].masks:
        return False
    masks = torch.stack([t.masks[weight] for t in tickets])
    return trains_kept(module, module.weight.detach().expand(len(tickets), *module.weight.shape), masks)


def fits_in_memory(tickets: list[Ticket]) -> bool:
    available = available_memory()
    return available is None or len(tickets) * saved_bytes(tickets[0]) <= MEMORY_SHARE * available


def saved_bytes(ticket: Ticket) -> int:
    """The bytes one training batch's forward pass of the ticket's model saves for the backward pass (its
    activations, mostly), on a random input; the model runs in eval mode, so its batch norm statistics stay as
    they are."""
    model, storages = ticket.model, {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    modes = {m: m.training for m in model.modules()}
    parameter = next(model.parameters())
    x = torch.randn(ticket.plan.batch_size, *ticket.splits.input_shape, device=parameter.device)
    try:
        model.eval()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
    finally:
        for m, training in modes.items():
            m.train(training)
    return sum(storages.values())


def available_memory() -> int | None:
    """Bytes of memory available to new allocations now (Linux: MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
