"""What a model learns: how a batch becomes a training loss, and a split a (loss, metric) pair.

The default task is classification: `model(inputs)` gives class scores, the loss is cross-entropy and the metric is
accuracy. Your own task (ticketlab.find_tickets) may change each part:
  loss    (outputs, targets) -> scalar tensor, the batch's mean; or "model": the model returns an object with `.loss`
          and `.logits` from `model(**batch)` (a Hugging Face model fed tokenised dict batches with "labels");
  metric  (outputs, targets) -> float, the batch's mean, higher is better (recorded as `val_acc` / `test_acc`);
  step    (model, batch) -> (loss, outputs, targets), for loops that are not (inputs, targets) -> loss.
Evaluation weighs every batch by its number of items, so a split's figure does not depend on the batch size."""

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import TicketlabError

EVAL_BATCH = 1000


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The fraction of rows whose highest score is the target class."""
    return (outputs.argmax(1) == targets).float().mean().item()


def to_device(batch, device: torch.device):
    """Every tensor of a batch (a tensor, or tuples, lists and dicts of them) on `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return type(batch)({k: to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@dataclass(frozen=True)
class Task:
    """See the module docstring; `Task()` is classification with cross-entropy and accuracy."""

    loss: Callable | str | None = None
    metric: Callable | None = None
    step: Callable | None = None

    @property
    def is_default(self) -> bool:
        return self.loss is None and self.metric is None and self.step is None

    def forward(self, model: nn.Module, batch) -> tuple[torch.Tensor, object, object]:
        """(mean loss, outputs, targets) of one batch already on the model's device."""
        if self.step is not None:
            return self.step(model, batch)
        if self.loss == "model":
            out = model(**batch)
            return out.loss, out.logits, batch["labels"]
        inputs, targets = batch
        outputs = model(inputs)
        return (self.loss or F.cross_entropy)(outputs, targets), outputs, targets

    def score(self, outputs, targets) -> float:
        return (self.metric or accuracy)(outputs, targets)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split) -> tuple[float, float]:
        """(mean loss, mean metric) over a whole split, in batches of `split.eval_batch` (default 1000)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        n, size = len(split), getattr(split, "eval_batch", EVAL_BATCH)
        loss_sum, metric_sum = 0.0, 0.0
        for i in range(0, n, size):
            batch = to_device(split.batch(torch.arange(i, min(i + size, n))), device)
            count = min(i + size, n) - i
            if self.is_default:  # summed in one reduction, as every run before user tasks existed
                inputs, targets = batch
                outputs = model(inputs)
                loss_sum += F.cross_entropy(outputs, targets, reduction="sum").item()
                metric_sum += (outputs.argmax(1) == targets).sum().item()
                continue
            loss, outputs, targets = self.forward(model, batch)
            loss_sum += loss.item() * count
            metric_sum += self.score(outputs, targets) * count
        model.train(was_training)
        return loss_sum / max(n, 1), metric_sum / max(n, 1)

    def check(self, model: nn.Module, split, batch_size: int) -> None:
        """One training batch through a copy of the model, the loss and the metric, before anything is written:
        each failure is one line naming the part that failed."""
        model = copy.deepcopy(model)  # BatchNorm statistics of the real model stay untouched
        try:
            batch = split.batch(torch.arange(min(batch_size, len(split))))
        except Exception as e:  # a user's dataset or collate function may raise anything
            raise TicketlabError(f"reading a training batch failed: {type(e).__name__}: {one_line(e)}") from None
        batch = to_device(batch, next(model.parameters()).device)
        try:
            loss, outputs, targets = self.forward(model, batch)
        except Exception as e:
            what = "the training step" if self.step else "the model's forward or the loss"
            raise TicketlabError(f"{what} failed on a training batch: {type(e).__name__}: {one_line(e)}") from None
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise TicketlabError(f"the loss must be a scalar tensor with a gradient (a batch mean), got {shape}; "
                                 f"reduce it with .mean()")
        try:
            value = float(self.score(outputs, targets))
        except Exception as e:
            raise TicketlabError(f"the metric failed on a training batch ({type(e).__name__}: {one_line(e)}); for "
                                 f"outputs that are not class scores pass metric=(outputs, targets) -> float") from None
        if value != value:
            raise TicketlabError("the metric returned NaN on a training batch; pass a metric that gives a number")


def one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


CLASSIFICATION = Task()
