"""Batch augmentations in torch (no torchvision): whole batches at once, seeded per step.

`cifar`: random crop 32x32 from the image zero-padded by 4 on each side, and horizontal flip with probability 1/2
(He et al. 2016; the standard CIFAR-10 recipe of the lottery-ticket papers)."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..registry import Registry

AUGMENTATIONS: Registry[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = Registry("augmentation")


@AUGMENTATIONS.register("none")
def no_augmentation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x


@AUGMENTATIONS.register("cifar")
def crop_and_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of an (N, C, H, W) batch, one gather in total."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
