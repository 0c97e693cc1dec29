"""What the benchmarks measure on: LeNet-300-100, VGG-16's fc layers, layer-wise magnitude masks, the densities and
batch sizes, and a wall/CPU timer."""

import math
from collections import OrderedDict

DENSITIES = (0.5, 0.2, 0.1, 0.05, 0.02)
QUICK_DENSITIES = (0.1, 0.02)
BATCHES = (1, 64)
BATCH = 60  # LeNet-300-100's batch size (Frankle & Carbin)


CONV_ZOO = ("lenet5", "conv2", "conv4", "conv6", "resnet20", "vgg16-cifar")  # benchmarks/sparse_inference.py --conv


def zoo(name: str):
    """A builder of the zoo model `name` (seed 0, eval mode)."""
    from ticketlab.models import build_model

    return lambda: build_model(name, seed=0).eval()


def lenet300():
    return zoo("lenet300")()


def vgg16_fc(layers=("fc6", "fc7", "fc8")):
    """VGG-16's classifier layers alone (ReLU between them), seeded random weights."""
    import torch
    from torch import nn

    shapes = {"fc6": (4096, 25088), "fc7": (4096, 4096), "fc8": (1000, 4096)}
    generator = torch.Generator().manual_seed(0)
    modules = []
    for i, name in enumerate(layers):
        out_f, in_f = shapes[name]
        linear = nn.utils.skip_init(nn.Linear, in_f, out_f)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(out_f, in_f, generator=generator) / math.sqrt(in_f))
            linear.bias.copy_(torch.randn(out_f, generator=generator) * 0.01)
        modules.append((name, linear))
        if i < len(layers) - 1:
            modules.append((f"relu_{name}", nn.ReLU()))
    model = nn.Sequential(OrderedDict(modules)).eval()
    model.input_shape = (shapes[layers[0]][1],)
    return model


def layerwise_masks(model, density: float):
    from ticketlab.core.masks import Masks
    from ticketlab.core.pruning import PruneSpec, prune

    return prune(model, Masks.ones(model), PruneSpec(criterion="magnitude", scope="layer", rate=1 - density))


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn()."""
    import time

    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu
