"""The end-to-end check: the converted model against its dense self, going dense where it did not win."""

import math

import torch
from torch import nn

from ticketlab.deploy.sparse_inference.fused import FusedChain
from ticketlab.deploy.sparse_inference.layers import SparseLayer
from ticketlab.deploy.sparse_inference.replace import _replace
from ticketlab.deploy.sparse_inference.timing import time_calls


@torch.no_grad()
def _check_whole_model(model: nn.Module, example: torch.Tensor, batch_sizes, min_time: float,
                       margin: float = 0.0) -> dict:
    """Time the converted model against the same model with its original dense layers, at each batch size; where the
    converted one is not faster by `margin` end to end (kernels that won alone can lose in sequence), its layers go
    dense."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, SparseLayer)}
    chains = [m for m in model.modules() if isinstance(m, FusedChain)]
    chains_lost = False  # a fused chain serves batch 1 only

    def swap(to_dense: bool) -> None:
        for name, m in layers.items():
            _replace(model, name, m.dense if to_dense else m)
        for chain in chains:
            chain.enabled = not to_dense and not chains_lost

    result = {}
    for batch in batch_sizes:
        x = example[torch.arange(batch) % example.shape[0]]
        calls = {"dense": lambda x=x: model(x), "sparse": lambda x=x: model(x)}
        best = {}
        for _ in range(3):  # a few short rounds per side, each side with its own modules in place
            for side in ("dense", "sparse"):
                swap(side == "dense")
                seconds = time_calls({side: calls[side]}, min_time / 3, rounds=3)[side]
                best[side] = min(best.get(side, math.inf), seconds)
        swap(False)
        result[batch] = (best["dense"], best["sparse"])
        if best["sparse"] * (1 + margin) >= best["dense"]:  # the margin again: a near tie is noise, not a win
            for m in layers.values():
                m.plan[batch] = "dense"
            chains_lost = chains_lost or batch == 1
    swap(False)
    return result
