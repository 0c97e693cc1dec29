"""`_Work`: the MACs and input densities of one row, summed over the calls of one observed forward pass."""

from dataclasses import dataclass

import torch


@dataclass
class _Work:
    """Work of one row summed over all calls in the batch (divided by the batch size at the end)."""

    dense: int = 0
    weight_sparse: int = 0
    act_sparse: float = 0.0  # sum over calls of weight-sparse MACs x measured input density
    input_numel: int = 0
    input_nonzero: int = 0
    measurable: bool = True  # False on the meta device, where values do not exist
    calls: int = 0

    def add(self, dense: int, weight_sparse: int, x: torch.Tensor | None) -> None:
        self.dense += dense
        self.weight_sparse += weight_sparse
        self.calls += 1
        if x is None or x.is_meta:  # no values to look at
            self.measurable = False
            return
        nonzero = int(torch.count_nonzero(x))
        self.input_numel += x.numel()
        self.input_nonzero += nonzero
        self.act_sparse += weight_sparse * nonzero / max(x.numel(), 1)
