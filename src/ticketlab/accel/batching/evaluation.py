"""Evaluation of K copies, each on its own split, with the numbers `ticketlab.engine.task.Task.evaluate` gives."""

import torch
import torch.nn.functional as F

from ticketlab.accel.batching.batched_layers import CONVS
from ticketlab.accel.batching.stacked import StackedModel
from ticketlab.engine.accelerator import Ticket
from ticketlab.engine.task import EVAL_BATCH


@torch.no_grad()
def evaluate_copies(model: StackedModel, tickets: list[Ticket], split: str,
                    device: torch.device) -> list[tuple[float, float]]:
    """(mean loss, accuracy) of every copy on its own `split`, summed as the classification task sums them (chunks of
    EVAL_BATCH rows, so the same numbers); copies sharing the data share the input, and run together unless the
    model has convolutions (whose activations for K copies at once would take K times the memory)."""
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(tickets)
    by_data: dict[int, list[int]] = {}
    for k, t in enumerate(tickets):
        by_data.setdefault(id(getattr(t.splits, split)), []).append(k)
    together = not any(type(m) in CONVS for _, m in model.layers)
    for ks in by_data.values():
        data = getattr(tickets[ks[0]].splits, split)
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
