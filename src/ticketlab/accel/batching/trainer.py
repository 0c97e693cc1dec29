"""Train K tickets of one architecture at once: one stacked model, one optimizer, per-copy everything else.

Each copy keeps its own initial weights, masks, data order (its plan's data seed, so its own batch indices), data
splits and optimizer state. The copies' losses are summed before the backward pass; as no operation mixes copies,
each copy's gradient is its own loss's gradient. Two ways, chosen by the masks:

- exact (every Linear layer keeps more than SPARSE_MAX_KEPT in some copy, or `sparse=False`): dense batched matmuls,
  and one optimizer slot per copy and parameter (slots.py). With one thread, results equal K runs of
  `ticketlab.engine.training.train` bit for bit (MLPs and convnets; tested); with more, as much as runs of `train` with
  different thread counts do (see stacked.py).
- sparse (some Linear layer keeps <= SPARSE_MAX_KEPT in every copy): those layers train as their kept entries
  (sparse_linear.py), fuse the ReLU after them, take their Adam step in the backward pass (step_in_backward.py),
  and the optimizer steps stacked tensors. Results equal K runs of `train` up to rounding (tested), as K runs of
  `train` on different machines would; 4.8x the throughput of sequential runs (fastest against fastest; every
  repeat >= 3.5x) for 8 LeNet-300-100 tickets keeping 10-20% on 2 cores (docs/speed.md).

Every copy's books (metric rows, loss sums, resume, divergence, snapshots, checkpoint `extra`, when to evaluate and
checkpoint) are kept by the engine's `Bookkeeping` (engine/bookkeeping.py), the one `train` keeps, so each copy's
stage directory gets exactly the files `train` writes; reports read them unchanged and a stage can resume batched or
alone. A group's checkpoints are written in two phases (checkpoints.py). On return every stage holds a checkpoint at
the last step: the caller writes its outputs, then deletes it (a kill in between retrains nothing). Batches:
batches.py; evaluation: evaluation.py."""

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ticketlab.accel.batching.batches import batch, gathers_feature_major
from ticketlab.accel.batching.checkpoints import NEXT, CopyState, reconcile, resume_step
from ticketlab.accel.batching.evaluation import evaluate_copies
from ticketlab.accel.batching.slots import Slots
from ticketlab.accel.batching.stacked import StackedModel, trains_kept
from ticketlab.accel.batching.step_in_backward import StepInBackward
from ticketlab.accel.kept_optimizer import KeptOptimizer
from ticketlab.core.masked_update import MaskedUpdate
from ticketlab.engine.accelerator import Ticket
from ticketlab.engine.bookkeeping import CHECKPOINT, Bookkeeping
from ticketlab.engine.checkpoint import vet
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.optimizers import ZERO_PRESERVING, make_optimizer
from ticketlab.engine.store import load_checkpoint, save_checkpoint
from ticketlab.engine.training import resolve_device


def train_batched(tickets: list[Ticket], cfg: TrainConfig, *,
                  augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                  progress: bool = False, desc: str = "", sparse: bool = True) -> list[list[dict]]:
    """Train `tickets` (same architecture and schedule) as one batched model; returns each copy's metric rows.
    `sparse`: train Linear layers that keep little as their kept entries (sparse_linear.py), where they can.

    Copies resuming from different steps (a stage trained alone before, then batched) train in groups by step."""
    check_compatible(tickets)
    for t in tickets:
        t.stage.mkdir(parents=True, exist_ok=True)
    reconcile([t.stage for t in tickets])
    for t in tickets:  # a corrupt checkpoint is set aside before its step is read: that copy starts afresh
        vet(t.stage / CHECKPOINT, t.model, t.plan)
    starts = [resume_step(t.stage, t.plan.start) for t in tickets]
    rows: list[list[dict] | None] = [None] * len(tickets)
    for start in sorted(set(starts)):
        group = [i for i, s in enumerate(starts) if s == start]
        for i, r in zip(group, BatchedRun([tickets[i] for i in group], cfg, augment, sparse).train(progress, desc),
                        strict=True):
            rows[i] = r
    return rows


def check_compatible(tickets: list[Ticket]) -> None:
    first = tickets[0].plan
    for t in tickets[1:]:
        p = t.plan
        same = (p.total, p.start, p.steps_per_epoch, p.batch_size, p.eval_every, p.checkpoint_every) == (
            first.total, first.start, first.steps_per_epoch, first.batch_size, first.eval_every,
            first.checkpoint_every)
        same = same and len(t.splits.train) == len(tickets[0].splits.train)
        if not same or set(t.masks) != set(tickets[0].masks):
            raise ValueError(f"ticket {t.stage} cannot batch with {tickets[0].stage}: other schedule or masks")


# -- the run ------------------------------------------------------------------------------------------------------
class BatchedRun:
    """One group of copies at the same step: the stacked model, the optimizer, and the per-copy bookkeeping."""

    def __init__(self, tickets: list[Ticket], cfg: TrainConfig, augment, sparse: bool = True):
        self.tickets, self.cfg, self.augment = tickets, cfg, augment
        self.device = resolve_device(cfg.device)
        self.plan = tickets[0].plan
        extras = [self.restore(t) for t in tickets]  # per copy: its model and optimizer state as saved
        self.book = Bookkeeping(tickets, extras)  # the step, loss sums, wall clocks and metric rows of every copy
        self.start = self.book.step
        self.model = StackedModel([t.model for t in tickets], self.device)
        masks = self.masks()
        for name, module in self.model.weights() if sparse else []:
            if name in masks and trains_kept(module, self.model.params[name], masks[name]):
                self.model.train_sparse(name, masks[name], module)
        self.slots = Slots(self.model, [t.masks for t in tickets], masks)
        self.feature_major = gathers_feature_major(self.model, tickets, augment)
        self.optimizer = KeptOptimizer(self.slots.params, self.slots.masks, cfg)
        if extras[0] is not None:
            state = self.slots.from_copies([e.pop("opt") for e in extras])
            self.optimizer.load_state_dict({"state": state,
                                            "param_groups": self.optimizer.state_dict()["param_groups"]})
        handled = {self.slots.name(i) for i in self.optimizer.handled}  # masked by the optimizer itself
        self.update = MaskedUpdate(*self.stacked_masks(masks, handled), reapply=cfg.optimizer not in ZERO_PRESERVING)
        stepped = StepInBackward.attach(self.model, self.optimizer.optimizer, handled, cfg)
        self.optimizer_has_work = any(p not in stepped for p in self.slots.params)

    @property
    def step(self) -> int:
        """The group's step, kept by its books."""
        return self.book.step

    @step.setter
    def step(self, step: int) -> None:
        self.book.step = step

    def restore(self, t: Ticket) -> dict | None:
        """Apply the masks, then load the copy's checkpoint into its model and a throwaway optimizer of its own."""
        t.model.to(self.device)
        t.masks.apply(t.model)
        path = t.stage / CHECKPOINT
        if not path.exists():
            return None
        own = make_optimizer(t.model.parameters(), self.cfg)
        extra = load_checkpoint(path, t.model, own, t.plan)
        return None if extra is None else {**extra, "opt": own.state_dict()["state"]}

    def masks(self) -> dict[str, torch.Tensor]:
        """The stacked masks of the parameters some copy prunes."""
        return {name: torch.stack([t.masks[name] for t in self.tickets]) for name in self.tickets[0].masks
                if not all(bool(t.masks[name].all()) for t in self.tickets)}

    def stacked_masks(self, masks: dict[str, torch.Tensor],
                      handled: set[str]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(stacked parameters, their stacked `masks`) where some copy has pruned entries that neither the optimizer
        (`handled`) nor sparse training leaves out itself."""
        masks = {name: m for name, m in masks.items() if name not in handled and name not in self.model.sparse}
        return [self.model.params[n] for n in masks], list(masks.values())

    # -- evaluation --------------------------------------------------------------------------------------------
    def log(self) -> None:
        """Every copy's metric row at this step."""
        self.book.log(self.evaluate)

    def evaluate(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Every copy's (loss, accuracy) on its validation split, then on its test split (batch norm: with the running
        statistics, as `train` evaluates)."""
        self.model.training = False
        try:
            return (evaluate_copies(self.model, self.tickets, "val", self.device),
                    evaluate_copies(self.model, self.tickets, "test", self.device))
        finally:
            self.model.training = True

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def checkpoint(self, final: bool = False) -> None:
        """Every copy's checkpoint, in two phases (see checkpoints.py). The final one needs no optimizer."""
        for k, t in enumerate(self.tickets):
            save_checkpoint(t.stage / NEXT, self.model.write_to(k, t.model),
                            CopyState(lambda k=k: self.slots.to_copy(self.optimizer.state_dict()["state"], k)
                                      if not final else {}), self.book.extra(k))
        for t in self.tickets:
            os.replace(t.stage / NEXT, t.stage / CHECKPOINT)

    # -- the loop ------------------------------------------------------------------------------------------------
    def train(self, progress: bool, desc: str) -> list[list[dict]]:
        book, plan = self.book, self.plan
        rows = book.open(self.evaluate)
        bar = tqdm(total=plan.total, initial=self.step, desc=desc, disable=not progress, leave=False, unit="it")
        while self.step < plan.total:
            book.add(self.train_step())
            bar.update(1)
            book.snapshot(self.copy_model)
            if book.evaluates():
                self.log()
            if book.checkpoints():
                self.checkpoint()
        bar.close()
        if self.start < plan.total:  # else this very checkpoint is where the group resumed from
            self.checkpoint(final=True)
        for k, t in enumerate(self.tickets):
            self.model.write_to(k, t.model)
        return rows

    def copy_model(self, k: int) -> nn.Module:
        """Copy k's own model, holding its current weights."""
        return self.model.write_to(k, self.tickets[k].model)

    def train_step(self) -> torch.Tensor:
        step = self.step
        lrs = {t.plan.lr(step) for t in self.tickets}
        if len(lrs) != 1:
            raise ValueError(f"batched tickets need one learning rate per step, got {sorted(lrs)} at step {step}")
        for group in self.optimizer.param_groups:
            group["lr"] = lrs.pop()
        xb, yb = batch(self.tickets, step, self.device, self.augment, self.feature_major)
        logits = self.model(xb)  # (K, B, classes)
        losses, values = self.losses(logits, yb)
        self.book.check(values)
        for p in self.slots.leaves():
            p.grad = None
        losses.sum().backward()
        with torch.no_grad():
            self.update.before_step()
            self.slots.point_grads()
            if self.optimizer_has_work:
                self.optimizer.step()
            self.model.stale = bool(self.model.sparse)
            self.update.after_step()
        return values

    def losses(self, logits: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each copy's mean loss (K,), to differentiate, and its value as logged (float64)."""
        if self.slots.stacked:  # sparse: rounded otherwise than `train` anyway, and the logits are a view of
            # (K, classes, B), so classes as dim 1 take no copy
            losses = F.cross_entropy(logits.transpose(1, 2), yb, reduction="none").mean(1)
            return losses, losses.detach().double()
        losses = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(yb.shape).mean(1)
        with torch.no_grad():  # the values `train` logs, summed as it sums them (the gradients are the same already)
            values = [F.cross_entropy(out, y).item() for out, y in zip(logits, yb, strict=True)]
        return losses, torch.tensor(values, dtype=torch.float64)
