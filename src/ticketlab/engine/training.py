"""Masked training: pruned weights stay exactly zero and get no update, for any optimizer.

Gradients of pruned weights are zeroed before the optimizer step and the mask is re-applied after it (MaskedUpdate,
masked_update.py), so momentum, weight decay and Adam's moments cannot revive them. The data order and the learning
rate are pure functions of the step (schedule.py), so a stage resumed from a checkpoint continues exactly where it
stopped. An accelerator (engine/accelerator.py) may supply an optimizer that keeps pruned entries at zero itself, with
the same bits and less memory traffic.

What a stage writes and when (metric rows, checkpoints, resume, divergence, snapshots) is kept by the stage's
`Bookkeeping` (bookkeeping.py), the one the batched accelerator keeps too; this loop trains and asks it."""

import contextlib
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ticketlab.core.masked_update import MaskedUpdate
from ticketlab.core.masks import Masks
from ticketlab.engine import distributed
from ticketlab.engine.accelerator import PURE_TORCH, Accelerator, Ticket
from ticketlab.engine.bookkeeping import CHECKPOINT, Bookkeeping
from ticketlab.engine.bookkeeping import Diverged as Diverged  # re-exported: `train` raises it
from ticketlab.engine.bookkeeping import early_stop as early_stop  # re-exported
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.optimizers import ZERO_PRESERVING
from ticketlab.engine.schedule import Plan, batch_indices
from ticketlab.engine.store import load_checkpoint, save_checkpoint
from ticketlab.errors import TicketlabError

EVAL_BATCH = 1000


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else CPU; a device that is absent is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TicketlabError(f"train.device {name!r} is not a device; allowed: auto, cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        count = torch.cuda.device_count()
        raise TicketlabError(f"train.device {name!r} is absent: this machine has {count} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TicketlabError(f"train.device {name!r} is absent on this machine")
    return device


def autocast(cfg: TrainConfig, device: torch.device):
    """The autocast context of `train.precision` (a no-op for fp32)."""
    if cfg.precision == "fp32":
        return contextlib.nullcontext()
    if cfg.precision == "fp16" and device.type != "cuda":
        raise TicketlabError(f"train.precision fp16 needs a CUDA device, got {device.type}; use bf16 or fp32")
    return torch.autocast(device.type, dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean loss, accuracy) over a whole split, in batches."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), EVAL_BATCH):
        xb, yb = x[i : i + EVAL_BATCH].to(device), y[i : i + EVAL_BATCH].to(device)
        out = model(xb)
        loss_sum += F.cross_entropy(out, yb, reduction="sum").item()
        correct += (out.argmax(1) == yb).sum().item()
    model.train(was_training)
    return loss_sum / max(len(x), 1), correct / max(len(x), 1)


def seed_dropout(seed: int, device: torch.device) -> None:
    """Dropout draws from the global generator: reseeding it every step makes them a function of (seed, step, rank),
    the same after a resume. torch.manual_seed would cost ~70 µs a step (it visits every backend); this ~1 µs."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def train(
    model: nn.Module,
    masks: Masks,
    splits,
    cfg: TrainConfig,
    plan: Plan,
    stage: Path,
    *,
    snapshot: tuple[int, Callable[[nn.Module], None]] | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    progress: bool = False,
    desc: str = "",
    accelerator: Accelerator = PURE_TORCH,
) -> list[dict]:
    """Train `model` under `masks` from plan.start to plan.total, writing metrics and checkpoints into `stage`
    (what and when: bookkeeping.py).

    Resumes from `stage/checkpoint.safetensors` when present. `snapshot=(k, fn)` calls fn(model) right after step k
    (used to save the late-rewinding point θk); `augment(batch, generator)` transforms each training batch with a
    generator seeded by the step. Returns the metric rows (docs/run-directory.md)."""
    stage.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
    model.to(device=device, memory_format=memory_format)
    masks.apply(model)
    optimizer, handled = accelerator.optimizer(model, masks, cfg)
    update = MaskedUpdate.for_model(model, masks, reapply=cfg.optimizer not in ZERO_PRESERVING, skip=handled)
    ckpt = stage / CHECKPOINT
    extra = load_checkpoint(ckpt, model, optimizer, plan) if ckpt.exists() else None  # None: corrupt, set aside
    # Data-parallel (ticketlab.engine.distributed): each rank trains on its share of every batch; rank 0 alone evaluates
    # and writes files. The books' sums hold global values, the same on every rank.
    ddp, main = distributed.active(), distributed.is_main()
    book = Bookkeeping([Ticket(model, masks, splits, plan, stage, snapshot, desc)], [extra], writes=main)

    def evaluations():
        return [evaluate(model, splits.val.x, splits.val.y)], [evaluate(model, splits.test.x, splits.test.y)]

    rows = book.open(evaluations)[0]
    x_train, y_train = splits.train.x, splits.train.y
    forward = distributed.wrap(model)
    if hasattr(optimizer, "reload"):  # an optimizer holding its own copy of the weights re-reads them: DDP's
        optimizer.reload()  # construction broadcast rank 0's weights into the model
    forward = torch.compile(forward) if cfg.compile else forward
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    model.train()
    bar = tqdm(total=plan.total, initial=book.step, desc=desc, disable=not progress or not main, leave=False,
               unit="it")
    while book.step < plan.total:
        step = book.step
        idx = batch_indices(step, len(x_train), plan).to(x_train.device)
        # index_select, not x[idx]: the same rows, 3x faster here, and serial (advanced indexing spawns threads)
        xb, yb = x_train.index_select(0, idx).to(device), y_train.index_select(0, idx).to(device)
        if augment is not None:
            xb = augment(xb, torch.Generator().manual_seed(plan.data_seed * 1_000_003 + step + 1))
        if ddp:  # this rank's contiguous share of the augmented global batch: one process's rows and random draws
            xb, yb = distributed.shard(xb), distributed.shard(yb)
        seed_dropout(distributed.step_seed(plan.data_seed, step), device)
        if cfg.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        for group in optimizer.param_groups:
            group["lr"] = plan.lr(step)
        with autocast(cfg, device):
            out = forward(xb)
            loss = distributed.shard_loss(out, yb, len(idx)) if ddp else F.cross_entropy(out, yb)
        value = (distributed.mean_over_ranks(loss) if ddp else loss).item()  # the global batch's mean loss, all ranks
        book.check(value)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        update.before_step()
        scaler.step(optimizer)
        scaler.update()
        update.after_step()
        book.add(value)
        bar.update(1)
        book.snapshot(lambda _: model)
        if book.evaluates():
            book.log(evaluations)
        if book.checkpoints():
            save_checkpoint(ckpt, model, optimizer, book.extra())
    bar.close()
    return rows

