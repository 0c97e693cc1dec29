"""Evaluation of K copies, each on its own split, with the numbers `ticketlab.engine.task.Task.evaluate` gives (up to
rounding where the convolutions train sparse)."""

import torch
import torch.nn.functional as F

from ticketlab.accel.batching.batched_layers import CONVS
from ticketlab.accel.batching.sparse_conv import SparseConvWeight
from ticketlab.accel.batching.stacked import StackedModel
from ticketlab.engine.accelerator import Ticket
from ticketlab.engine.task import EVAL_BATCH


@torch.no_grad()
def evaluate_copies(model: StackedModel, tickets: list[Ticket], split: str,
                    device: torch.device) -> list[tuple[float, float]]:
    """(mean loss, accuracy) of every copy on its own `split`, summed as the classification task sums them.

    Where convolutions train sparse, all copies run at once through their kernels, each on its own data, EVAL_BATCH
    // K rows of each at a time (the memory of one copy's chunk), instead of a dense evaluation of each copy in
    turn: their numbers then equal Task.evaluate's up to rounding, as their training does. Otherwise chunks of
    EVAL_BATCH rows give Task.evaluate's very numbers: copies sharing the data share the input, and run together
    unless the model has convolutions (whose activations for K copies at once would take K times the memory)."""
    datas = [getattr(t.splits, split) for t in tickets]
    if any(isinstance(w, SparseConvWeight) for w in model.sparse.values()) and len({len(d.x) for d in datas}) == 1:
        return evaluate_stacked(model, datas, device, max(1, EVAL_BATCH // len(tickets)))
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(tickets)
    by_data: dict[int, list[int]] = {}
    for k, data in enumerate(datas):
        by_data.setdefault(id(data), []).append(k)
    together = not any(type(m) in CONVS for _, m in model.layers)
    for ks in by_data.values():
        data = datas[ks[0]]
        for part in [ks] if together else [[k] for k in ks]:
            params = model.select(part)
            loss, correct = [0.0] * len(part), [0] * len(part)
            for i in range(0, len(data.x), EVAL_BATCH):
                xb, yb = data.x[i : i + EVAL_BATCH].to(device), data.y[i : i + EVAL_BATCH].to(device)
                logits = model(xb, shared=True, params=params)  # (copies, n, classes)
                for j in range(len(part)):
                    loss[j] += F.cross_entropy(logits[j], yb, reduction="sum").item()
                    correct[j] += (logits[j].argmax(1) == yb).sum().item()
            n = max(len(data.x), 1)
            for j, k in enumerate(part):
                out[k] = (loss[j] / n, correct[j] / n)
    return out


def evaluate_stacked(model: StackedModel, datas: list, device: torch.device, rows: int) -> list[tuple[float, float]]:
    """All copies at once with their sparse weights, `rows` rows of each copy's data (all of one length) at a time."""
    shared = all(d is datas[0] for d in datas)
    loss, correct = [0.0] * len(datas), [0] * len(datas)
    for i in range(0, len(datas[0].x), rows):
        yb = torch.stack([d.y[i : i + rows] for d in datas]).to(device)
        xb = datas[0].x[i : i + rows] if shared else torch.stack([d.x[i : i + rows] for d in datas])
        logits = model(xb.to(device), shared=shared)  # (copies, n, classes)
        for j in range(len(datas)):
            loss[j] += F.cross_entropy(logits[j], yb[j], reduction="sum").item()
            correct[j] += (logits[j].argmax(1) == yb[j]).sum().item()
    n = max(len(datas[0].x), 1)
    return [(total / n, hits / n) for total, hits in zip(loss, correct, strict=True)]
