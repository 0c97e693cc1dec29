"""Lottery tickets inside Lightning's `Trainer.fit` (optional extra: `pip install 'ticketlab[lightning]'`).

    cb = LotteryCallback(PruneSpec(rate=0.2), rewind=20)     # survivors go back to the weights after step 20
    for level in cb.levels(2):                               # levels 0 (dense), 1, 2
        L.Trainer(max_steps=200, callbacks=[cb]).fit(module, train_loader, val_loader)   # a new Trainer per level
    cb.history                                               # per level: density, steps, callback_metrics

A Lightning Trainer counts its steps across `fit` calls, so each level needs a new one (its `configure_optimizers`
runs again: a fresh optimizer). The lottery cycle itself lives in integrations/cycle.py.
"""

import math

from ticketlab.errors import TicketlabError
from ticketlab.integrations.cycle import LotteryCycle

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover
    raise TicketlabError("LotteryCallback for Lightning needs pip install 'ticketlab[lightning]'") from None


class LotteryCallback(LotteryCycle, Callback):
    """Keeps pruned weights at exactly zero during `fit` and runs the prune / rewind cycle between levels
    (`levels(n)`, `next_level()`; see LotteryCycle). Pruned gradients are zeroed in `on_before_optimizer_step`,
    before Lightning clips gradients, so clipping sees only the kept ones."""

    def on_fit_start(self, trainer, pl_module):
        if trainer.global_step:  # such a Trainer would stop at once, before training (on_train_start)
            raise TicketlabError(f"level {self.level} got a Lightning Trainer that has already trained "
                                 f"{trainer.global_step} steps: make a new Trainer for each level")

    def on_train_start(self, trainer, pl_module):
        total = trainer.estimated_stepping_batches
        self.begin_training(pl_module, total if math.isfinite(total) else None)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.before_optimizer_step()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Lightning has no event right after the optimizer step: this is the first one (also after batches that only
        # accumulate gradients, where zeroing the pruned weights again changes nothing).
        self.after_optimizer_step(trainer.global_step)

    def on_validation_end(self, trainer, pl_module):
        if self.history and not trainer.sanity_checking:
            self.record_metrics(trainer.callback_metrics)

    def on_train_end(self, trainer, pl_module):
        self.record_metrics(trainer.callback_metrics)
        self.end_training(trainer.global_step)
