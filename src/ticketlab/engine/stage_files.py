"""What a stage writes into its directory (docs/run-directory.md), in an order that makes every moment resumable:
its masks first, metrics and checkpoints while it trains (engine/training.py), then its final weights, then the
summary that marks it done, and only then the checkpoint goes."""

from pathlib import Path

import torch
from torch import nn

from ticketlab.core.counting import count
from ticketlab.core.files import write_json_atomic
from ticketlab.core.masks import Masks
from ticketlab.engine.accelerator import Ticket
from ticketlab.engine.store import save_weights
from ticketlab.engine.training import early_stop


def begin(ticket: Ticket) -> None:
    ticket.stage.mkdir(parents=True, exist_ok=True)
    ticket.masks.save(ticket.stage / "masks.safetensors")


def finish(ticket: Ticket, kind: str, level: int, rows: list[dict], wall: float, batched: int = 1) -> dict:
    """Final weights, then the summary (it marks the stage done), then the checkpoint goes: a run killed before the
    summary resumes from the checkpoint, never from scratch. `batched`: the stages trained with this one as one
    batched model (ticketlab.accel.batching), 1 when trained alone."""
    model, masks, plan = ticket.model, ticket.masks, ticket.plan
    save_weights(ticket.stage / "final.safetensors", model.cpu())
    summary = {"level": level, "kind": kind, "status": "done", "steps": plan.total - plan.start, "wall": wall,
               "batched": batched, **early_stop(rows), **counts(model, masks, ticket.splits.train.x[:64])}
    write_json_atomic(ticket.stage / "summary.json", summary)
    remove_checkpoints(ticket.stage)
    return summary


def remove_checkpoints(stage: Path) -> None:
    for name in ("checkpoint.safetensors", "checkpoint.next.safetensors"):
        (stage / name).unlink(missing_ok=True)


def counts(model: nn.Module, masks: Masks, example: torch.Tensor) -> dict:
    """Densities, parameter counts and MACs per example (ticketlab.core.counting), for the summary."""
    total = sum(p.numel() for p in model.parameters())
    kept, numel = sum(masks.kept().values()), sum(masks.numels().values())
    macs = count(model, masks, example)
    return {
        "density": masks.density(), "sparsity": masks.sparsity(), "kept": kept, "prunable": numel,
        "params_total": total, "params_kept": total - (numel - kept), "layer_density": masks.densities(),
        "macs_dense": macs.macs_dense, "macs_kept": macs.macs_weight_sparse,
    }
