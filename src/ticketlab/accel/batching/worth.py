"""Whether K tickets train faster as one batched model than one after another.

Batching pays for Linear layers (batched matmuls, sparse kernels) and for convolutions that train as their kept
entries (sparse_conv.py). A dense convolution gains nothing: it runs copy by copy inside the batched model too, and
the stacking adds copies of every activation (8 Conv-6 tickets with dense layers only: 0.93x the throughput of
sequential runs, benchmarks/ticket_batching.py). So copies of a convolutional network batch only where the
convolutions left dense hold at most DENSE_CONV_SHARE of the convolutions' multiply-adds (a first layer on 3 input
channels, a 1x1 shortcut), and only plain convnets (nn.Sequential, stacked.py): copies of a residual network with
batch norm run the model's own forward over stacked layers (stacked_modules.py), where batch norm, ReLU and the
additions over K copies' activations (too large for the caches) eat most of what sparse convolutions save (8
ResNet-20 tickets at 16.8% kept: 1.24x the throughput of sequential runs, for K copies' activations in memory at
once; other models of that path are unmeasured). Otherwise the engine trains the copies one after another, each as
`train` would alone."""

import torch

from ticketlab.accel.batching.batched_layers import CONVS, Unsupported
from ticketlab.accel.batching.stacked import check_structure, trains_kept
from ticketlab.core.counting import count
from ticketlab.engine.accelerator import Ticket

DENSE_CONV_SHARE = 0.1


def worth_batching(tickets: list[Ticket]) -> bool:
    model = tickets[0].model
    convs = {name: m for name, m in model.named_modules() if type(m) in CONVS}
    if not convs:
        return True
    try:
        check_structure(model)
    except Unsupported:
        return False
    macs = {row.name: row.macs_dense for row in count(model).layers if row.name in convs}
    dense = sum(macs.get(name, 0) for name, m in convs.items() if not sparse(f"{name}.weight", m, tickets))
    return dense <= DENSE_CONV_SHARE * sum(macs.values())


def sparse(weight: str, module, tickets: list[Ticket]) -> bool:
    """Whether the batched model would train this convolution's weight as its kept entries."""
    if weight not in tickets[0].masks:
        return False
    masks = torch.stack([t.masks[weight] for t in tickets])
    return trains_kept(module, module.weight.detach().expand(len(tickets), *module.weight.shape), masks)
