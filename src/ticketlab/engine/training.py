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
from torch import nn
from tqdm import tqdm

from ticketlab.core.masked_update import MaskedUpdate
from ticketlab.core.masks import Masks
from ticketlab.data.splits import InMemory
from ticketlab.engine import distributed
from ticketlab.engine.accelerator import PURE_TORCH, Accelerator, Ticket
from ticketlab.engine.bookkeeping import CHECKPOINT, Bookkeeping
from ticketlab.engine.bookkeeping import Diverged as Diverged  # re-exported: `train` raises it
from ticketlab.engine.bookkeeping import early_stop as early_stop  # re-exported
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.schedule import Plan, batch_indices
from ticketlab.engine.store import load_checkpoint, save_checkpoint
from ticketlab.engine.task import CLASSIFICATION, Task, to_device
from ticketlab.errors import TicketlabError


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


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a classifier over the tensors of a whole split."""
    return CLASSIFICATION.evaluate(model, InMemory(x, y))


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
    task: Task = CLASSIFICATION,
) -> list[dict]:
    """Train `model` under `masks` from plan.start to plan.total, writing metrics and checkpoints into `stage`
    (what and when: bookkeeping.py).

    Resumes from `stage/checkpoint.safetensors` when present. `snapshot=(k, fn)` calls fn(model) right after step k
    (used to save the late-rewinding point θk); `augment(batch, generator)` transforms each training batch with a
    generator seeded by the step; `task` says what a batch's loss and a split's metric are (engine/task.py): your
    own data and loss train without augmentation and data parallelism. Returns the metric rows
    (docs/run-directory.md)."""
    stage.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
    model.to(device=device, memory_format=memory_format)
    masks.apply(model)
    optimizer, handled = accelerator.optimizer(model, masks, cfg)
    update = MaskedUpdate.for_model(model, masks, reapply=not accelerator.preserves_zeros(cfg), skip=handled)
    ckpt = stage / CHECKPOINT
    extra = load_checkpoint(ckpt, model, optimizer, plan) if ckpt.exists() else None  # None: corrupt, set aside
    # Data-parallel (ticketlab.engine.distributed): each rank trains on its share of every batch; rank 0 alone evaluates
    # and writes files. The books' sums hold global values, the same on every rank.
    ddp, main = distributed.active(), distributed.is_main()
    book = Bookkeeping([Ticket(model, masks, splits, plan, stage, snapshot, desc)], [extra], writes=main)

    def evaluations():
        return [task.evaluate(model, splits.val)], [task.evaluate(model, splits.test)]

    rows = book.open(evaluations)[0]
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
        idx = batch_indices(step, len(splits.train), plan)
        batch = to_device(splits.train.batch(idx), device)
        if task.is_default:
            batch = shaped(batch, step, cfg, plan, augment)
        seed_dropout(distributed.step_seed(plan.data_seed, step), device)
        for group in optimizer.param_groups:
            group["lr"] = plan.lr(step)
        with autocast(cfg, device):
            if ddp:
                loss = distributed.shard_loss(forward(batch[0]), batch[1], len(idx))
            else:
                loss = task.forward(forward, batch)[0]
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


def shaped(batch: tuple[torch.Tensor, torch.Tensor], step: int, cfg: TrainConfig, plan: Plan, augment):
    """A classification batch as the step trains it: augmented with a generator seeded by the step, this rank's
    contiguous share of it when data-parallel (one process's rows and random draws), channels-last if asked."""
    xb, yb = batch
    if augment is not None:
        xb = augment(xb, torch.Generator().manual_seed(plan.data_seed * 1_000_003 + step + 1))
    if distributed.active():
        xb, yb = distributed.shard(xb), distributed.shard(yb)
    if cfg.channels_last and xb.dim() == 4:
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, yb

