"""Scheduling the stages of one or more runs (e.g. one per seed): level by level, batched or alone.

A `Stage` is one training of a run (IMP at a level, or a baseline): where it writes, what it is, which stages it may
train with (`batch_key`) and how to get its ticket when it trains. A run shows the scheduler only what `Run` names
(ticketlab.engine.lottery.Lottery is one); `run_lotteries` trains the levels in order and `train_stages` cuts each
level's stages into batched chunks, the same way on every resume. What a stage writes: engine/stage_files.py."""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from torch import nn

from ticketlab.data.augment import AUGMENTATIONS
from ticketlab.engine import distributed, stage_files, stopping
from ticketlab.engine.accelerator import Accelerator, Ticket
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.schedule import Plan
from ticketlab.engine.store import RunStore, is_done
from ticketlab.engine.task import CLASSIFICATION, Task
from ticketlab.engine.training import Diverged, train


@dataclass(frozen=True)
class Training:
    """How the stages of one run train: the same settings, data, augmentation, accelerator and architecture."""

    cfg: TrainConfig
    splits: object
    model: nn.Module  # the run's model: batched copies must share its architecture
    augment: str  # a name in ticketlab.data.augment.AUGMENTATIONS
    accelerator: Accelerator
    progress: bool = False
    task: Task = CLASSIFICATION  # what a batch's loss and a split's metric are (engine/task.py)

    @property
    def augmentation(self):
        return AUGMENTATIONS.get(self.augment)

    @cached_property
    def batchable(self) -> bool:
        t = self.cfg
        if (t.batch_tickets < 2 or t.precision != "fp32" or t.compile or t.channels_last or distributed.active()
                or not self.task.is_default):
            return False
        return self.accelerator.batchable(self.model, self.splits.input_shape)

    def batch_key(self, plan: Plan, rewind: str) -> tuple | None:
        """Stages with equal keys may train as one batched model; None: this run's stages train alone."""
        if not self.batchable:
            return None
        schedule = (plan.start, plan.total, plan.steps_per_epoch, plan.batch_size, plan.eval_every,
                    plan.checkpoint_every, rewind)
        return (repr(self.model), tuple(self.splits.input_shape), repr(self.cfg), self.augment, schedule)


@dataclass
class Stage:
    """One training of a run (IMP at a level, or a baseline) as the scheduler sees it."""

    path: Path
    kind: str
    level: int
    ticket: Callable[[], Ticket]  # its start weights, masks and plan, made when it is about to train
    training: Training
    batch_key: tuple | None = None

    def done(self) -> bool:
        return is_done(self.path)


class Run(Protocol):
    """What the scheduler needs of a run."""

    store: RunStore

    def begin(self) -> None:
        """Write what level 0 starts from (θ0), unless written; called on rank 0 only."""

    def stages(self, level: int) -> list[Stage]:
        """The stages of `level`, done or not, IMP first."""

    def goes_on(self, level: int) -> bool:
        """Whether level + 1 follows, once the stages of `level` are done."""


def run_lotteries(runs: Sequence[Run]) -> list[RunStore]:
    """Run lotteries (e.g. one per seed) level by level. At each level the stages of all runs still going (IMP and
    its baselines; level L+1 needs level L, so levels run in order) train together as batched models when they
    share an architecture and a schedule (`train.batch_tickets`, ticketlab.accel.batching), else one after another."""
    if distributed.is_main():
        for run in runs:
            run.begin()
    distributed.barrier()
    active, level = list(runs), 0
    while active:
        train_stages([stage for run in active for stage in run.stages(level)])
        active, level = [run for run in active if run.goes_on(level)], level + 1
    return [run.store for run in runs]


def train_stages(stages: list[Stage]) -> None:
    """Train the stages not done yet: groups of equal batch keys in chunks of at most `train.batch_tickets`.

    Chunks are cut from all stages, done or not, so a resumed run batches exactly as the first attempt did."""
    groups: dict = {}
    for i, stage in enumerate(stages):
        groups.setdefault(("alone", i) if stage.batch_key is None else stage.batch_key, []).append(stage)
    for group in groups.values():
        for chunk in balanced_chunks(group, group[0].training.cfg.batch_tickets):
            pending = [s for s in chunk if not s.done()]
            for s in chunk:
                if s.done() and distributed.is_main():  # a run killed between a summary and the checkpoint's removal
                    stage_files.remove_checkpoints(s.path)
            if len(chunk) == 1 and pending:
                train_alone(pending[0])
            elif pending:
                train_chunk(pending, len(chunk))


def train_alone(stage: Stage) -> None:
    """Train one stage by itself; data-parallel, every rank trains and rank 0 alone writes the stage's files."""
    ticket, how = stage.ticket(), stage.training
    distributed.check_same_masks(ticket.masks, f"level {stage.level} {stage.kind}")  # refuse ranks that differ
    main = distributed.is_main()
    if main:
        stage_files.begin(ticket)
    started = time.perf_counter()
    diverged = None
    try:
        rows = train(ticket.model, ticket.masks, ticket.splits, how.cfg, ticket.plan, ticket.stage,
                     snapshot=ticket.snapshot, augment=how.augmentation, progress=how.progress,
                     desc=f"level {stage.level} {stage.kind}", accelerator=how.accelerator, task=how.task)
    except Diverged as e:  # every rank stops at the same step: the rule reads global losses only
        rows, diverged = e.rows, str(e)
    if main:
        if diverged:
            stopping.warn(f"{diverged}; the stage is recorded with status diverged")
        stage_files.finish(ticket, stage.kind, stage.level, rows, time.perf_counter() - started, diverged=diverged)
    distributed.barrier()  # the other ranks read what rank 0 wrote


def train_chunk(stages: list[Stage], batched: int) -> None:
    """Train `stages` as one batched model; `batched` is the size of their chunk (the same on every resume)."""
    tickets = [s.ticket() for s in stages]
    how = stages[0].training  # equal batch keys: the same training for all
    if not how.accelerator.worth_batching(tickets):  # e.g. convolutions that would stay dense
        for s in stages:
            train_alone(s)
        return
    for t in tickets:
        stage_files.begin(t)
    started = time.perf_counter()
    try:
        rows = how.accelerator.train_batched(tickets, how.cfg, augment=how.augmentation, progress=how.progress,
                                             desc=f"level {stages[0].level}: {len(stages)} tickets batched")
    except Diverged as e:
        # One copy diverged: each stage goes on alone from its last checkpoint, where the one that diverged is
        # recorded as such. (Those that finish alone round as unbatched stages do: a rare path, said here.)
        stopping.warn(f"{e}; the {len(stages)} stages of this batched group continue one at a time")
        for s in stages:
            train_alone(s)
        return
    wall = time.perf_counter() - started
    for s, t, r in zip(stages, tickets, rows, strict=True):
        stage_files.finish(t, s.kind, s.level, r, wall, batched=batched)


def balanced_chunks(items: list, limit: int) -> list[list]:
    """`items` in order, cut into the fewest chunks of at most `limit`, their sizes differing by at most one."""
    n = max(1, math.ceil(len(items) / max(limit, 1)))
    size, extra = divmod(len(items), n)
    out, i = [], 0
    for c in range(n):
        step = size + (c < extra)
        out.append(items[i : i + step])
        i += step
    return [c for c in out if c]
