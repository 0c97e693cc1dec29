"""Batch norm of stacked copies (accel/batching/stacked_norm.py): each copy's output, gradients and running statistics
bit for bit those of its own nn.BatchNorm, in training and evaluation, for every momentum and affine setting."""

import pytest
import torch
from torch import nn

from ticketlab.accel.batching.stacked_norm import stacked_batch_norm

K, B, C = 3, 5, 4


def copies(make, training: bool) -> list[nn.Module]:
    g = torch.Generator().manual_seed(0)
    mods = [make() for _ in range(K)]
    for m in mods:
        if m.affine:
            m.weight.data.uniform_(generator=g)
            m.bias.data.normal_(generator=g)
        if m.track_running_stats:
            m.running_mean.normal_(generator=g)
            m.running_var.uniform_(0.5, 2, generator=g)
        m.train(training)
    return mods


def stacked(mods: list[nn.Module]) -> dict[str, torch.Tensor]:
    own = [{**dict(m.named_parameters()), **dict(m.named_buffers())} for m in mods]
    return {f"bn.{n}": torch.stack([o[n].detach().clone() for o in own]).requires_grad_(n in ("weight", "bias"))
            for n in own[0]}


@pytest.mark.parametrize("make,spatial", [
    (lambda: nn.BatchNorm2d(C), (6, 5)),
    (lambda: nn.BatchNorm2d(C, momentum=None), (3, 3)),
    (lambda: nn.BatchNorm1d(C, affine=False), (7,)),
    (lambda: nn.BatchNorm1d(C), ()),
    (lambda: nn.BatchNorm2d(C, track_running_stats=False), (4, 4)),
])
@pytest.mark.parametrize("training", [True, False])
def test_each_copy_is_its_own_batch_norm(make, spatial, training):
    mods = copies(make, training)
    tensors = stacked(mods)
    g = torch.Generator().manual_seed(1)
    h = torch.randn(K, B, C, *spatial, generator=g).requires_grad_()
    upstream = torch.randn(h.shape, generator=g)
    y = stacked_batch_norm(make().train(training), tensors, "bn", h)
    (y * upstream).sum().backward()
    for k, m in enumerate(mods):
        x = h[k].detach().clone().requires_grad_()
        own = m(x)
        (own * upstream[k]).sum().backward()
        assert torch.equal(own, y[k])
        assert torch.equal(x.grad, h.grad[k])
        for name, p in m.named_parameters():
            assert torch.equal(p.grad, tensors[f"bn.{name}"].grad[k]), name
        for name, buffer in m.named_buffers():
            assert torch.equal(buffer, tensors[f"bn.{name}"][k]), name


def test_without_grad_it_updates_statistics_and_records_nothing():
    mods = copies(lambda: nn.BatchNorm2d(C), training=True)
    tensors = stacked(mods)
    h = torch.randn(K, B, C, 3, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = stacked_batch_norm(nn.BatchNorm2d(C).train(), tensors, "bn", h)
        for k, m in enumerate(mods):
            assert torch.equal(m(h[k]), y[k])
            assert torch.equal(m.running_var, tensors["bn.running_var"][k])
    assert y.grad_fn is None
