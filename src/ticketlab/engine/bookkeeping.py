"""The bookkeeping of a training stage: what it writes, and when. `training.train` and the batched accelerator both
keep their books here, so a stage's files are the same whichever trained it, and a stage can resume under either.

A stage trains the steps [plan.start, plan.total) of its `Plan` and writes into its directory:

- `metrics.jsonl`, one row per evaluation: at the step it starts from (unless it resumes with rows), after every
  `plan.eval_every` steps, and after the last step. A row is {step, epoch, train_loss (the mean training loss of the
  steps since the previous row; None in the first), val_loss, val_acc, test_loss, test_acc, lr (at that step),
  wall (seconds of training, across resumes)}, in that order. `early_stop(rows)` is the statistic the level reports.
- `checkpoint.safetensors` after every `plan.checkpoint_every` steps but the last: weights, optimizer state, torch RNG
  state and `extra` = {step, loss_sum, loss_count, wall}, what the books need to continue exactly.

On resume the books restart from `extra`, and the rows after the checkpoint's step (written by a run killed later)
are dropped. A stage diverges when a step's loss is not finite (checked before the update), or when the mean
training loss over an evaluation interval exceeds DIVERGED_FACTOR times its starting value: the validation loss of
the stage's first row, or ln(classes) (a uniform guess) where that is larger (checked after the row is written; the
rule uses the global loss sums only, so every rank of a data-parallel run decides alike). Either stops the stage
with `Diverged`, which carries the rows written so far: the scheduler records the stage with status "diverged"
(engine/stages.py), and a run that goes on past it keeps what was written. A stage's `snapshot=(k, fn)` gets
fn(model) right after step k (the late-rewinding point θk).

One `Bookkeeping` keeps the books of K >= 1 stages trained in lockstep (one schedule, one step): their train-loss sums
are one float64 tensor, added to once a step, so K copies cost what one does. A trainer's loop keeps them so:

    book = Bookkeeping(tickets, extras)          # extras: each stage's checkpoint `extra`, or None
    rows = book.open(evaluate)                   # evaluate() -> each stage's (val, test) (loss, accuracy)
    while book.step < plan.total:
        ... forward ...; book.check(losses)      # before the update
        ... backward, step ...; book.add(losses)
        book.snapshot(model_of)                  # model_of(k): stage k's model
        if book.evaluates(): book.log(evaluate)
        if book.checkpoints(): save_checkpoint(..., extra=book.extra(k)) for each stage k
"""

import math
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from ticketlab.engine import distributed, metric_sinks
from ticketlab.engine.accelerator import Ticket
from ticketlab.engine.store import append_metrics, read_metrics, write_metrics
from ticketlab.errors import TicketlabError

METRICS, CHECKPOINT = "metrics.jsonl", "checkpoint.safetensors"

# each stage's (loss, accuracy) on its validation split, then on its test split
Evaluation = Callable[[], tuple[Sequence[tuple[float, float]], Sequence[tuple[float, float]]]]


DIVERGED_FACTOR = 10.0


class Diverged(TicketlabError):
    """The loss became NaN or infinite, or far above chance; what was written so far is kept, and `rows` holds it
    (the metric rows of the stage that diverged, `stage` its index among the books' stages)."""

    def __init__(self, message: str, rows: list[dict] | None = None, stage: int = 0):
        super().__init__(message)
        self.rows, self.stage = rows or [], stage


class Bookkeeping:
    """The step, train-loss sums, wall clock and metric rows of K stages trained in lockstep (`tickets`: their stage
    directories, plans, descriptions and snapshots). `extras`: each one's checkpoint `extra`, or None to start
    afresh. `writes=False` (the ranks of a data-parallel run but the first) keeps the step and the sums only."""

    def __init__(self, tickets: Sequence[Ticket], extras: Sequence[dict | None], *, writes: bool = True):
        self.tickets, self.writes, self.plan = list(tickets), writes, tickets[0].plan
        first = extras[0]
        self.resumed = first is not None
        self.step: int = first["step"] if first else self.plan.start
        self.loss_sum = torch.tensor([e["loss_sum"] if e else 0.0 for e in extras], dtype=torch.float64)
        self.loss_count: int = first["loss_count"] if first else 0
        now = time.perf_counter()
        self.started = [now - (e["wall"] if e else 0.0) for e in extras]
        self.rows: list[list[dict]] = [[] for _ in self.tickets]

    def open(self, evaluate: Evaluation) -> list[list[dict]]:
        """Each stage's rows up to the checkpoint's step (none when starting afresh), written back to its metrics;
        the stages left without rows get their first one. Returns the rows, which `log` appends to."""
        if self.writes:
            for t, rows in zip(self.tickets, self.rows, strict=True):
                rows[:] = read_metrics(t.stage / METRICS, upto_step=self.step if self.resumed else -1)
                write_metrics(t.stage / METRICS, rows)
            missing = [k for k, rows in enumerate(self.rows) if not rows]
            if missing:
                self.log(evaluate, missing)
        return self.rows

    def check(self, losses: float | torch.Tensor) -> None:
        """Stop with `Diverged` if a loss of this step is not finite (a float for one stage, a tensor of K for K),
        naming the first stage whose is not."""
        if isinstance(losses, float):
            if not math.isfinite(losses):
                self.diverged(0, losses)
        elif not torch.isfinite(losses).all():
            k = int((~torch.isfinite(losses)).nonzero()[0])
            self.diverged(k, losses[k].item())

    def diverged(self, k: int, loss: float, what: str = "loss became") -> None:
        t = self.tickets[k]
        raise Diverged(f"{what} {loss} at step {self.step} ({t.desc or t.stage.name}); lower train.lr or check "
                       f"the data; results so far are kept in {t.stage}", self.rows[k], k)

    def check_mean(self) -> None:
        """Stop with `Diverged` if a stage's mean training loss since the last row is far above where it started.
        Data-parallel, rank 0 alone holds the rows: it judges, and every rank stops with it."""
        if not self.loss_count:
            return
        means = (self.loss_sum / self.loss_count).tolist()
        over = [k for k, mean in enumerate(means) if self.rows[k] and mean > DIVERGED_FACTOR * self.starting_loss(k)]
        if distributed.any_rank(bool(over)):
            k = over[0] if over else 0
            limit = DIVERGED_FACTOR * self.starting_loss(k)
            self.diverged(k, f"{means[k]:.4g}", f"mean training loss above {limit:.3g} (10 x its starting value):")

    def starting_loss(self, k: int) -> float:
        """The validation loss before stage k trained (its first row), or ln(classes) where that is larger: a deep
        network can start far above a uniform guess, and only a loss far above its own start is divergence."""
        chance = math.log(max(2, int(getattr(self.tickets[k].splits, "num_classes", 2) or 2)))
        first = self.rows[k][0].get("val_loss") if self.rows[k] else None
        return max(chance, first) if first is not None and math.isfinite(first) else chance

    def add(self, losses: float | torch.Tensor) -> None:
        """One step done, with these losses (a float for one stage, a float64 tensor of K for K)."""
        self.loss_sum += losses
        self.loss_count += 1
        self.step += 1

    def snapshot(self, model: Callable[[int], nn.Module]) -> None:
        """Hand stage k's model, `model(k)`, to its snapshot function if it wants the weights after this step."""
        for k, t in enumerate(self.tickets):
            if t.snapshot and self.step == t.snapshot[0] and self.writes:
                t.snapshot[1](model(k))

    def evaluates(self) -> bool:
        """Whether a row is due after this step."""
        return self.step % self.plan.eval_every == 0 or self.step == self.plan.total

    def checkpoints(self) -> bool:
        """Whether a checkpoint is due after this step (never after the last: the caller writes the outputs)."""
        return self.step % self.plan.checkpoint_every == 0 and self.step < self.plan.total and self.writes

    def log(self, evaluate: Evaluation, which: Iterable[int] | None = None) -> None:
        """Append a row to the metrics of the stages `which` (all by default) from `evaluate()`; then the train-loss
        sums start again."""
        if self.writes:
            val, test = evaluate()
            sums, step = self.loss_sum.tolist(), self.step
            for k in range(len(self.tickets)) if which is None else which:
                plan = self.tickets[k].plan
                row = {
                    "step": step, "epoch": step / plan.steps_per_epoch,
                    "train_loss": sums[k] / self.loss_count if self.loss_count else None,
                    "val_loss": val[k][0], "val_acc": val[k][1], "test_loss": test[k][0], "test_acc": test[k][1],
                    "lr": plan.lr(min(step, plan.total - 1)), "wall": time.perf_counter() - self.started[k],
                }
                self.rows[k].append(row)
                append_metrics(self.tickets[k].stage / METRICS, row)
                metric_sinks.send(self.tickets[k].stage, row)
        self.check_mean()
        self.loss_sum.zero_()
        self.loss_count = 0

    def extra(self, k: int = 0) -> dict:
        """What stage k's checkpoint records for its books to continue (`extras` when resuming)."""
        return {"step": self.step, "loss_sum": self.loss_sum[k].item(), "loss_count": self.loss_count,
                "wall": time.perf_counter() - self.started[k]}


def early_stop(rows: list[dict]) -> dict:
    """Frankle & Carbin's early-stop statistic: the step of minimum validation loss and the test accuracy there,
    with the final and best values beside it."""
    best = min(rows, key=lambda r: (r["val_loss"], r["step"]))
    return {
        "early_stop_step": best["step"],
        "early_stop_val_loss": best["val_loss"],
        "early_stop_test_acc": best["test_acc"],
        "final_test_acc": rows[-1]["test_acc"],
        "final_val_acc": rows[-1]["val_acc"],
        "best_test_acc": max(r["test_acc"] for r in rows),
        "best_val_acc": max(r["val_acc"] for r in rows),
    }
