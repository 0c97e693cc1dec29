"""Normalisation, done once in torch on whole tensors when a dataset is loaded (never per batch).

Image sources scale pixels to [0, 1] and then standardise with the channel mean and std of the full
official training set, the constants everyone publishes, so numbers are comparable across papers.
"""

import torch

# Per-channel mean and std of the official training images after scaling to [0, 1].
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def standardise(x: torch.Tensor, stats: tuple[tuple[float, ...], tuple[float, ...]]) -> torch.Tensor:
    """(x - mean) / std per channel, for x of shape (N, C, ...) with C = len(mean)."""
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, *([1] * (x.dim() - 2))) for v in stats)
    return (x - mean) / std


def scale_pixels(pixels: torch.Tensor, maximum: float = 255.0) -> torch.Tensor:
    """Integer pixels to float32 in [0, 1]."""
    return pixels.to(torch.float32) / maximum
