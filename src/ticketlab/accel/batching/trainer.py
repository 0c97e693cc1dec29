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

Each copy's stage directory gets exactly the files `train` writes (metrics.jsonl, checkpoint.safetensors in the same
format), so reports read them unchanged and a stage can resume batched or alone. A group's checkpoints are written in
two phases (checkpoints.py). On return every stage holds a checkpoint at the last step: the caller writes its
outputs, then deletes it (a kill in between retrains nothing)."""

import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ticketlab.accel.batching.checkpoints import NEXT, CopyState, reconcile, resume_step
from ticketlab.accel.batching.slots import Slots
from ticketlab.accel.batching.sparse_linear import kernel as sparse_kernel
from ticketlab.accel.batching.sparse_linear import trains_sparse
from ticketlab.accel.batching.stacked import CONVS, StackedModel
from ticketlab.accel.batching.step_in_backward import StepInBackward
from ticketlab.accel.kept_optimizer import KeptOptimizer
from ticketlab.core.masked_update import MaskedUpdate
from ticketlab.engine.accelerator import Ticket
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.optimizers import ZERO_PRESERVING, make_optimizer
from ticketlab.engine.schedule import batch_indices
from ticketlab.engine.store import append_metrics, load_checkpoint, read_metrics, save_checkpoint, write_metrics
from ticketlab.engine.training import EVAL_BATCH, Diverged, resolve_device


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
        self.step = self.start = resume_step(tickets[0].stage, self.plan.start)
        self.extras = [self.restore(t) for t in tickets]  # per copy: its model and optimizer state as saved
        self.model = StackedModel([t.model for t in tickets], self.device)
        masks = self.masks()
        linear = self.linear_weights()
        for name in [n for n in masks if sparse and n in linear]:
            if trains_sparse(self.model.params[name], masks[name]):
                self.model.train_sparse(name, masks[name])
        self.slots = Slots(self.model, [t.masks for t in tickets], masks)
        self.feature_major = self.gathers_feature_major()
        self.optimizer = KeptOptimizer(self.slots.params, self.slots.masks, cfg)
        if self.extras[0] is not None:
            state = self.slots.from_copies([e.pop("opt") for e in self.extras])
            self.optimizer.load_state_dict({"state": state,
                                            "param_groups": self.optimizer.state_dict()["param_groups"]})
        handled = {self.slots.name(i) for i in self.optimizer.handled}  # masked by the optimizer itself
        self.update = MaskedUpdate(*self.stacked_masks(masks, handled), reapply=cfg.optimizer not in ZERO_PRESERVING)
        stepped = StepInBackward.attach(self.model, self.optimizer.optimizer, handled, cfg)
        self.optimizer_has_work = any(p not in stepped for p in self.slots.params)

    def restore(self, t: Ticket) -> dict | None:
        """Apply the masks, then load the copy's checkpoint into its model and a throwaway optimizer of its own."""
        t.model.to(self.device)
        t.masks.apply(t.model)
        path = t.stage / "checkpoint.safetensors"
        if not path.exists():
            return None
        own = make_optimizer(t.model.parameters(), self.cfg)
        extra = load_checkpoint(path, t.model, own)
        return {**extra, "opt": own.state_dict()["state"]}

    def masks(self) -> dict[str, torch.Tensor]:
        """The stacked masks of the parameters some copy prunes."""
        return {name: torch.stack([t.masks[name] for t in self.tickets]) for name in self.tickets[0].masks
                if not all(bool(t.masks[name].all()) for t in self.tickets)}

    def linear_weights(self) -> set[str]:
        return {f"{name}.weight" for name, module in self.model.layers if isinstance(module, nn.Linear)}

    def stacked_masks(self, masks: dict[str, torch.Tensor],
                      handled: set[str]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(stacked parameters, their stacked `masks`) where some copy has pruned entries that neither the optimizer
        (`handled`) nor sparse training leaves out itself."""
        masks = {name: m for name, m in masks.items() if name not in handled and name not in self.model.sparse}
        return [self.model.params[n] for n in masks], list(masks.values())

    # -- data ----------------------------------------------------------------------------------------------------
    def gathers_feature_major(self) -> bool:
        """Whether batches are gathered feature-major, the layout the sparse kernel reads (sparse_linear.py): when
        the first layer trains sparse and the copies share one float32 training split, not augmented."""
        first = self.tickets[0].splits.train
        return (self.model.takes_feature_major() and self.augment is None and first.x.dtype == torch.float32
                and first.x.device.type == "cpu" and all(t.splits.train is first for t in self.tickets))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x (K, B, *input) and y (K, B): each copy's own batch of its own training split."""
        trains = [t.splits.train for t in self.tickets]
        idxs = [batch_indices(step, len(d.x), t.plan).to(d.x.device) for d, t in zip(trains, self.tickets, strict=True)]
        k, b = len(idxs), len(idxs[0])
        if all(d is trains[0] for d in trains):  # one split: one gather for all copies
            index, x = torch.cat(idxs), trains[0].x
            ys = trains[0].y.index_select(0, index).view(k, b)
            if self.feature_major:  # (K, B, F) as a view of (K, F, B rounded up)
                xs = sparse_kernel().gather_feature_major(x.reshape(len(x), -1).contiguous(), index, k)
                xs = xs[..., :b].transpose(1, 2)
            else:
                xs = x.index_select(0, index).view(k, b, *x.shape[1:])
        else:
            xs, ys = self.gather(trains, idxs)
        xs, ys = xs.to(self.device), ys.to(self.device)
        if self.augment is not None:  # each copy's batch with its own generator, seeded as `train` seeds it
            xs = torch.stack([self.augment(x, torch.Generator().manual_seed(t.plan.data_seed * 1_000_003 + step + 1))
                              for x, t in zip(xs, self.tickets, strict=True)])
        return xs, ys

    @staticmethod
    def gather(trains: list, idxs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        xs = torch.empty(len(trains), len(idxs[0]), *trains[0].x.shape[1:], dtype=trains[0].x.dtype)
        ys = torch.empty(len(trains), len(idxs[0]), dtype=trains[0].y.dtype)
        for k, (d, idx) in enumerate(zip(trains, idxs, strict=True)):  # gathered in place: no stacking copy
            torch.index_select(d.x, 0, idx, out=xs[k])
            torch.index_select(d.y, 0, idx, out=ys[k])
        return xs, ys

    # -- evaluation ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str) -> list[tuple[float, float]]:
        """(mean loss, accuracy) of every copy on its own `split`, summed as `training.evaluate` sums them (chunks of
        EVAL_BATCH rows, so the same numbers); copies sharing the data share the input, and run together unless the
        model has convolutions (whose activations for K copies at once would take K times the memory)."""
        out: list[tuple[float, float]] = [(0.0, 0.0)] * len(self.tickets)
        by_data: dict[int, list[int]] = {}
        for k, t in enumerate(self.tickets):
            by_data.setdefault(id(getattr(t.splits, split)), []).append(k)
        together = not any(type(m) in CONVS for _, m in self.model.layers)
        for ks in by_data.values():
            data = getattr(self.tickets[ks[0]].splits, split)
            for part in [ks] if together else [[k] for k in ks]:
                params = self.model.select(part)
                loss, correct = [0.0] * len(part), [0] * len(part)
                for i in range(0, len(data.x), EVAL_BATCH):
                    xb, yb = data.x[i : i + EVAL_BATCH].to(self.device), data.y[i : i + EVAL_BATCH].to(self.device)
                    logits = self.model(xb, shared=True, params=params)  # (copies, n, classes)
                    for j in range(len(part)):
                        loss[j] += F.cross_entropy(logits[j], yb, reduction="sum").item()
                        correct[j] += (logits[j].argmax(1) == yb).sum().item()
                n = max(len(data.x), 1)
                for j, k in enumerate(part):
                    out[k] = (loss[j] / n, correct[j] / n)
        return out

    def log(self, rows: list[list[dict]], started: list[float], loss_sum: torch.Tensor, loss_count: int,
            which: list[int]) -> None:
        val, test = self.evaluate("val"), self.evaluate("test")
        for k in which:
            t = self.tickets[k]
            row = {
                "step": self.step, "epoch": self.step / self.plan.steps_per_epoch,
                "train_loss": loss_sum[k].item() / loss_count if loss_count else None,
                "val_loss": val[k][0], "val_acc": val[k][1], "test_loss": test[k][0], "test_acc": test[k][1],
                "lr": t.plan.lr(min(self.step, self.plan.total - 1)), "wall": time.perf_counter() - started[k],
            }
            rows[k].append(row)
            append_metrics(t.stage / "metrics.jsonl", row)

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def checkpoint(self, started: list[float], loss_sum: torch.Tensor, loss_count: int, final: bool = False) -> None:
        """Every copy's checkpoint, in two phases (see checkpoints.py). The final one needs no optimizer."""
        for k, t in enumerate(self.tickets):
            extra = {"step": self.step, "loss_sum": loss_sum[k].item(), "loss_count": loss_count,
                     "wall": time.perf_counter() - started[k]}
            save_checkpoint(t.stage / NEXT, self.model.write_to(k, t.model),
                            CopyState(lambda k=k: self.slots.to_copy(self.optimizer.state_dict()["state"], k)
                                      if not final else {}), extra)
        for t in self.tickets:
            os.replace(t.stage / NEXT, t.stage / "checkpoint.safetensors")

    # -- the loop ------------------------------------------------------------------------------------------------
    def train(self, progress: bool, desc: str) -> list[list[dict]]:
        plan, tickets, k_all = self.plan, self.tickets, range(len(self.tickets))
        resumed = self.extras[0] is not None
        loss_sum = torch.tensor([e["loss_sum"] if e else 0.0 for e in self.extras], dtype=torch.float64)
        loss_count = self.extras[0]["loss_count"] if resumed else 0
        now = time.perf_counter()
        started = [now - (e["wall"] if e else 0.0) for e in self.extras]
        rows = []
        for t in tickets:
            rows.append(read_metrics(t.stage / "metrics.jsonl", upto_step=self.step if resumed else -1))
            write_metrics(t.stage / "metrics.jsonl", rows[-1])
        if any(not r for r in rows):
            self.log(rows, started, loss_sum, loss_count, [k for k in k_all if not rows[k]])
        bar = tqdm(total=plan.total, initial=self.step, desc=desc, disable=not progress, leave=False, unit="it")
        while self.step < plan.total:
            losses = self.train_step()
            loss_sum += losses
            loss_count += 1
            self.step += 1
            bar.update(1)
            self.snapshots()
            if self.step % plan.eval_every == 0 or self.step == plan.total:
                self.log(rows, started, loss_sum, loss_count, list(k_all))
                loss_sum.zero_()
                loss_count = 0
            if self.step % plan.checkpoint_every == 0 and self.step < plan.total:
                self.checkpoint(started, loss_sum, loss_count)
        bar.close()
        if self.start < plan.total:  # else this very checkpoint is where the group resumed from
            self.checkpoint(started, loss_sum, loss_count, final=True)
        for k, t in enumerate(tickets):
            self.model.write_to(k, t.model)
        return rows

    def train_step(self) -> torch.Tensor:
        step = self.step
        lrs = {t.plan.lr(step) for t in self.tickets}
        if len(lrs) != 1:
            raise ValueError(f"batched tickets need one learning rate per step, got {sorted(lrs)} at step {step}")
        for group in self.optimizer.param_groups:
            group["lr"] = lrs.pop()
        xb, yb = self.batch(step)
        logits = self.model(xb)  # (K, B, classes)
        losses, values = self.losses(logits, yb)
        if not torch.isfinite(values).all():
            k = int((~torch.isfinite(values)).nonzero()[0])
            t = self.tickets[k]
            raise Diverged(f"loss became {values[k].item()} at step {step} ({t.desc or t.stage.name}); "
                           f"lower train.lr or check the data; results so far are kept in {t.stage}")
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

    def snapshots(self) -> None:
        for k, t in enumerate(self.tickets):
            if t.snapshot and self.step == t.snapshot[0]:
                t.snapshot[1](self.model.write_to(k, t.model))
