"""Lottery tickets inside a Hugging Face `transformers.Trainer` (optional extra: `pip install 'ticketlab[nlp]'`).

    cb = LotteryCallback(PruneSpec(rate=0.2, exclude=("classifier.*",)), rewind="init")
    trainer = Trainer(model=model, args=args, train_dataset=..., eval_dataset=..., callbacks=[cb])
    for level in cb.levels(2):      # level 0 dense, then 2 pruned levels: 20% and 36% pruned
        trainer.train()
        trainer.evaluate()
    cb.history                      # per level: density, steps, the trainer's eval metrics

The lottery cycle itself lives in integrations/cycle.py; this file maps Trainer events onto it.
"""

from ticketlab.errors import TicketlabError
from ticketlab.integrations.cycle import LotteryCycle

try:
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover
    raise TicketlabError("LotteryCallback for transformers.Trainer needs pip install 'ticketlab[nlp]'") from None


class LotteryCallback(LotteryCycle, TrainerCallback):
    """Keeps pruned weights at exactly zero during `Trainer.train()` and runs the prune / rewind cycle between levels
    (`levels(n)`, `next_level()`; see LotteryCycle). Each level's `train()` runs the trainer's whole schedule from
    step 0 with the optimizer's state cleared; `rewind=k` resets the survivors to the weights after step k of
    level 0.

    Gradient clipping (`max_grad_norm`, 1.0 by default) happens before the Trainer's first callback event of a step,
    so its norm still counts the pruned weights' gradients; they are zeroed right after, before the update."""

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.begin_training(model, state.max_steps)
        if self.level and optimizer is not None:
            optimizer.state.clear()  # the Trainer keeps its optimizer across train() calls: a level starts afresh

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.before_optimizer_step()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.after_optimizer_step(state.global_step + 1)  # the Trainer counts the step after this event

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.history and metrics:
            self.record_metrics(metrics)

    def on_train_end(self, args, state, control, **kwargs):
        self.end_training(state.global_step)
