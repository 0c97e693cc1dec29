"""Batch augmentations in torch (no torchvision): whole batches at once, seeded per step.

`cifar`: random crop 32x32 from the image padded by 4 on each side, and horizontal flip with probability 1/2
(He et al. 2016; the standard CIFAR-10 recipe of the lottery-ticket papers). Batches arrive standardised, so the
padding is the standardised value of a black pixel: what torchvision's RandomCrop(32, padding=4) before Normalize
gives in OpenLTH and the other reference code (zeros here would be a mean-grey border instead)."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ticketlab.core.registry import Registry
from ticketlab.data.normalise import CIFAR10_STATS
from ticketlab.errors import TicketlabError

AUGMENTATIONS: Registry[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = Registry("augmentation")


@AUGMENTATIONS.register("none")
def no_augmentation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x


def standardised_black(stats) -> tuple[float, ...]:
    """Per channel, the value of a zero pixel after (x - mean) / std."""
    mean, std = stats
    return tuple(-m / s for m, s in zip(mean, std, strict=True))


CIFAR10_BLACK = standardised_black(CIFAR10_STATS)


@AUGMENTATIONS.register("cifar")
def cifar_crop_and_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """CIFAR-10 training augmentation: pad 4 with black, random 32x32 crop, random horizontal flip."""
    if x.dim() != 4 or x.shape[1] != len(CIFAR10_BLACK):
        raise TicketlabError(f"data.augment 'cifar' needs (N, 3, H, W) colour images, got a batch of shape "
                             f"{tuple(x.shape)}; use data.augment=none")
    return crop_and_flip(x, generator, padding=4, fill=CIFAR10_BLACK)


def crop_and_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4,
                  fill: float | tuple[float, ...] = 0.0) -> torch.Tensor:
    """Random crop of an (N, C, H, W) batch padded with `fill` (a value, or one per channel) and random horizontal
    flip, one gather in total."""
    n, c, h, w = x.shape
    if fill == 0.0:
        padded = F.pad(x, (padding, padding, padding, padding))
    else:
        border = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
        padded = border.expand(n, c, h + 2 * padding, w + 2 * padding).clone()
        padded[:, :, padding : padding + h, padding : padding + w] = x
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
