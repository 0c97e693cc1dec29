"""Scheduling the stages of one or more runs (e.g. one per seed): level by level, batched or alone.

A `Stage` is one training of a run (IMP at a level, or a baseline); `run_lotteries` trains the levels in order and
`train_stages` cuts each level's stages into batched chunks, the same way on every resume."""

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ticketlab.core.files import read_json
from ticketlab.data.augment import AUGMENTATIONS
from ticketlab.engine import distributed
from ticketlab.engine.store import RunStore, is_done, save_weights

if TYPE_CHECKING:  # lottery.py imports this module: Lottery only names a type here
    from ticketlab.engine.lottery import Lottery


@dataclass
class Stage:
    """One training of a run (IMP at a level, or a baseline) as the scheduler sees it."""

    lottery: "Lottery"
    path: Path
    kind: str
    level: int

    def done(self) -> bool:
        return is_done(self.path)


def run_lotteries(lotteries: list["Lottery"]) -> list[RunStore]:
    """Run lotteries (e.g. one per seed) level by level. At each level the stages of all runs still going (IMP and
    its baselines; level L+1 needs level L, so levels run in order) train together as batched models when they
    share an architecture and a schedule (`train.batch_tickets`, ticketlab.accel.batching), else one after another."""
    for lottery in lotteries:
        if distributed.is_main() and not lottery.store.init_path.exists():
            save_weights(lottery.store.init_path, lottery.model)
    distributed.barrier()
    dense: dict[int, dict] = {}
    active, level = list(lotteries), 0
    while active:
        train_stages([stage for lottery in active for stage in lottery.stages(level)])
        going = []
        for lottery in active:
            summary = read_json(lottery.store.level(level) / "summary.json")
            dense.setdefault(id(lottery), summary)
            if level < lottery.cfg.lottery.levels and not (level and lottery.should_stop(summary, dense[id(lottery)])):
                going.append(lottery)
        active, level = going, level + 1
    return [lottery.store for lottery in lotteries]


def train_stages(stages: list[Stage]) -> None:
    """Train the stages not done yet: groups of equal batch keys in chunks of at most `train.batch_tickets`.

    Chunks are cut from all stages, done or not, so a resumed run batches exactly as the first attempt did."""
    groups: dict = {}
    for i, stage in enumerate(stages):
        key = stage.lottery.batch_key(stage.level)
        groups.setdefault(("alone", i) if key is None else key, []).append(stage)
    for group in groups.values():
        for chunk in balanced_chunks(group, group[0].lottery.cfg.train.batch_tickets):
            pending = [s for s in chunk if not s.done()]
            for s in chunk:
                if s.done() and distributed.is_main():  # a run killed between a summary and the checkpoint's removal
                    remove_checkpoints(s.path)
            if len(chunk) == 1 and pending:
                s = pending[0]
                t = s.lottery.prepare(s, s.lottery.level_masks(s.level))
                s.lottery.run_stage(s.path, s.kind, s.level, t.model, t.masks, t.plan, t.snapshot)
            elif pending:
                train_chunk(pending, len(chunk))


def remove_checkpoints(stage: Path) -> None:
    for name in ("checkpoint.safetensors", "checkpoint.next.safetensors"):
        (stage / name).unlink(missing_ok=True)


def train_chunk(stages: list[Stage], batched: int) -> None:
    """Train `stages` as one batched model; `batched` is the size of their chunk (the same on every resume)."""
    masks = {}  # the level's IMP masks, computed once per run (baselines derive theirs from them)
    for s in stages:
        masks.setdefault(id(s.lottery), s.lottery.level_masks(s.level))
    tickets = [s.lottery.prepare(s, masks[id(s.lottery)]) for s in stages]
    for s, t in zip(stages, tickets, strict=True):
        s.lottery.begin_stage(s.path, t.masks)
    first = stages[0].lottery
    started = time.perf_counter()
    rows = first.accelerator.train_batched(tickets, first.cfg.train, augment=AUGMENTATIONS.get(first.cfg.data.augment),
                                           progress=first.progress,
                                           desc=f"level {stages[0].level}: {len(stages)} tickets batched")
    wall = time.perf_counter() - started
    for s, t, r in zip(stages, tickets, rows, strict=True):
        s.lottery.finish_stage(s.path, s.kind, s.level, t.model, t.masks, t.plan, r, wall, batched=batched)


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

