"""What a stage writes into its directory (docs/run-directory.md), in an order that makes every moment resumable:
its masks first, metrics and checkpoints while it trains (engine/training.py), then its final weights, then the
summary that marks it done, and only then the checkpoint goes."""

import math
from pathlib import Path

import torch
from torch import nn

from ticketlab.core.counting import count
from ticketlab.core.files import file_errors, write_json_atomic
from ticketlab.core.masks import Masks
from ticketlab.engine.accelerator import Ticket
from ticketlab.engine.store import save_weights
from ticketlab.engine.training import early_stop


def begin(ticket: Ticket) -> None:
    """The stage's masks, checked against its model first: a failing check writes nothing."""
    ticket.masks.check(ticket.model)
    with file_errors(ticket.stage, "create"):
        ticket.stage.mkdir(parents=True, exist_ok=True)
    ticket.masks.save(ticket.stage / "masks.safetensors")


def finish(ticket: Ticket, kind: str, level: int, rows: list[dict], wall: float, batched: int = 1,
           diverged: str | None = None) -> dict:
    """Final weights, then the summary (it marks the stage done), then the checkpoint goes: a run killed before the
    summary resumes from the checkpoint, never from scratch. `batched`: the stages trained with this one as one
    batched model (ticketlab.accel.batching), 1 when trained alone. `diverged`: the one-line message of a stage that
    diverged; its summary says `"status": "diverged"` and the message, its statistics come from the finite rows, and
    its final weights are those it stopped with."""
    model, masks, plan = ticket.model, ticket.masks, ticket.plan
    save_weights(ticket.stage / "final.safetensors", model.cpu())
    status = {"status": "diverged", "message": diverged} if diverged else {"status": "done"}
    summary = {"level": level, "kind": kind, **status, "steps": plan.total - plan.start, "wall": wall,
               "batched": batched, "threads": torch.get_num_threads(), **statistics(rows),
               **counts(model, masks, ticket.splits.train.example())}
    write_json_atomic(ticket.stage / "summary.json", summary)
    remove_checkpoints(ticket.stage)
    return summary


def statistics(rows: list[dict]) -> dict:
    """The early-stop statistic over the rows whose losses are finite (a diverged stage's last rows may not be);
    none finite: every statistic None."""
    finite = [r for r in rows if all(isinstance(r.get(k), float | int) and math.isfinite(r[k])
                                     for k in ("val_loss", "val_acc", "test_acc"))]
    if not finite:
        return dict.fromkeys(early_stop([{"step": 0, "val_loss": 0.0, "val_acc": 0.0, "test_acc": 0.0}]))
    return early_stop(finite) if len(finite) < len(rows) else early_stop(rows)


def remove_checkpoints(stage: Path) -> None:
    for name in ("checkpoint.safetensors", "checkpoint.next.safetensors"):
        (stage / name).unlink(missing_ok=True)


def counts(model: nn.Module, masks: Masks, example: torch.Tensor | None) -> dict:
    """Densities, parameter counts and MACs per example (ticketlab.core.counting), for the summary; MACs None when
    there is no example input to count with (a data set whose batches are not (inputs, targets) tensors)."""
    total = sum(p.numel() for p in model.parameters())
    kept, numel = sum(masks.kept().values()), sum(masks.numels().values())
    macs = count(model, masks, example) if example is not None else None
    return {
        "density": masks.density(), "sparsity": masks.sparsity(), "kept": kept, "prunable": numel,
        "params_total": total, "params_kept": total - (numel - kept), "layer_density": masks.densities(),
        "macs_dense": macs and macs.macs_dense, "macs_kept": macs and macs.macs_weight_sparse,
    }
