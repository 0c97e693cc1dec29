"""Iterative Magnitude Pruning with rewinding, and its baselines, as a resumable run.

Level 0 trains the dense network. Each later level prunes the previous level's final weights by the criterion
(engine/level_masks.py, ticketlab.core.criteria), resets the survivors by the rewind mode (engine/rewind.py) and
retrains; the baselines (engine/baselines.py) train beside it from the level's ticket. Every stage checks for its own
output first, so running the same command again resumes where a killed run stopped and ends with the same numbers.
Which stages train when, batched or alone, and what they write, is the scheduler's (engine/stages.py): `Lottery` is
the `stages.Run` it drives."""

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path

from torch import nn

from ticketlab.core.files import read_json
from ticketlab.core.fingerprint import Fingerprint, fingerprint
from ticketlab.core.masks import Masks
from ticketlab.data import load_dataset
from ticketlab.engine import distributed, preflight, stopping
from ticketlab.engine.accelerator import PURE_TORCH, Accelerator, Ticket
from ticketlab.engine.baselines import BASELINES, REINIT_SEED_OFFSET, Start
from ticketlab.engine.config import Config, LotteryConfig
from ticketlab.engine.level_masks import level_masks
from ticketlab.engine.rewind import Rewind, rewind_for
from ticketlab.engine.schedule import Plan, make_plan
from ticketlab.engine.stages import Stage, Training, run_lotteries
from ticketlab.engine.store import RunStore, load_weights, save_weights
from ticketlab.engine.task import CLASSIFICATION, Task
from ticketlab.engine.training import resolve_device
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model, model_info

__all__ = ["REINIT_SEED_OFFSET", "Lottery", "model_for", "open_store"]  # the seed offset lives in engine/baselines.py


@dataclass
class Lottery:
    """One IMP run, built once: config, run directory, data and model; the scheduler drives it level by level."""

    cfg: Config
    store: RunStore
    splits: object
    model: nn.Module
    progress: bool = False
    accelerator: Accelerator = PURE_TORCH
    task: Task = CLASSIFICATION  # what a batch's loss and a split's metric are (engine/task.py)
    # (seed, pretrained) -> a new model, for runs on a model of your own (ticketlab.find_tickets); None: the registry's
    build: Callable[[int, bool], nn.Module] | None = None
    _masks: dict[int, Masks] = field(default_factory=dict, repr=False)  # the latest levels', shared by their stages

    @classmethod
    def open(cls, cfg: Config, runs_dir: str | Path, preset: str | None = None, progress: bool = False,
             accelerator: Accelerator = PURE_TORCH) -> "Lottery":
        """Every check that can fail runs before the run directory is made or touched (engine/preflight.py)."""
        preflight.check_runs_dir(runs_dir)
        resolve_device(cfg.train.device)  # an absent device is refused before anything is written
        splits = splits_of(cfg)
        preflight.check_splits(cfg, splits)
        model = model_for(cfg, splits, cfg.seeds.init)
        expected = tuple(model.input_shape)
        if math.prod(expected) != math.prod(splits.input_shape):
            raise TicketlabError(
                f"model {cfg.model.name!r} takes input {expected}, dataset {cfg.data.name!r} gives {splits.input_shape}"
            )
        preflight.check_training(cfg, model, len(splits.train))
        CLASSIFICATION.check(model, splits.train, cfg.data.batch_size)  # a forward that fails, before any file
        return cls(cfg, open_store(runs_dir, cfg, preset, fingerprint(model)), splits, model, progress, accelerator)

    def run(self) -> RunStore:
        return run_lotteries([self])[0]

    # -- what the scheduler asks (stages.Run) ------------------------------------------------------------------
    def begin(self) -> None:
        """θ0, written once: level 0 starts from it, and so does every level when rewinding to init."""
        if not self.store.init_path.exists():
            save_weights(self.store.init_path, self.model)

    def stages(self, level: int) -> list[Stage]:
        """IMP at `level`, then (from level 1) the configured baselines."""
        key = self.training.batch_key(self.stage_plan(level), self.cfg.lottery.rewind if level else "")
        kinds = ["imp", *(self.cfg.lottery.baselines if level else [])]
        return [Stage(self.stage_dir(level, kind), kind, level, partial(self.ticket, level, kind), self.training, key)
                for kind in kinds]

    def goes_on(self, level: int) -> bool:
        """Whether level + 1 follows: levels remain, no stopping rule holds, IMP did not diverge at `level`, and the
        next level's pruning neither empties a tensor nor leaves the masks as they are (engine/stopping.py)."""
        if level >= self.cfg.lottery.levels:
            return False
        summary = self.summary(level)
        if level > 0 and should_stop(self.cfg.lottery, summary, self.summary(0)):
            return False
        why = stopping.diverged(summary, level)
        if why is None:
            why = stopping.pruning(self.cfg, self.level_masks(level), self.level_masks(level + 1), level + 1)
        if why and distributed.is_main():
            stopping.warn(f"{self.store.root.name}: {why}")
        return why is None

    def ticket(self, level: int, kind: str) -> Ticket:
        """What a stage trains from: IMP's start weights, masks and plan at `level`, or those a baseline derives from
        them (engine/baselines.py). Level 0 also saves θk, when rewinding late, after step k."""
        path, desc = self.stage_dir(level, kind), f"{self.store.root.name} level {level} {kind}"
        masks = self.level_masks(level)
        if level == 0:
            k = self.rewind().step
            snapshot = (k, partial(save_weights, self.store.rewind_path)) if k else None
            return Ticket(self.weights(self.store.init_path), masks, self.splits, self.plan(), path, snapshot, desc)
        model, _, plan = self.start_point(level)
        start = Start(level, model, masks)
        start = start if kind == "imp" else BASELINES.get(kind)(start, self)
        return Ticket(start.model, start.masks, self.splits, plan, path, None, desc)

    # -- rewinding (engine/rewind.py) --------------------------------------------------------------------------
    def rewind(self) -> Rewind:
        plan = self.plan()
        return rewind_for(self.cfg.lottery.rewind, plan.total, plan.steps_per_epoch)

    def start_point(self, level: int) -> tuple[nn.Module, int, Plan]:
        """IMP's start weights, first step and plan at a level >= 1."""
        step, plan = self.rewind().step, self.stage_plan(level)
        if step is None:  # no weight rewinding
            return self.final_weights(level - 1), plan.start, plan
        return self.weights(self.store.init_path if step == 0 else self.store.rewind_path), plan.start, plan

    def stage_plan(self, level: int) -> Plan:
        """The plan of every stage of `level`: the whole schedule at level 0; later, as the rewind mode says."""
        plan = self.plan()
        rewind = self.rewind() if level else Rewind(step=0)
        if rewind.step is not None:
            return replace(plan, start=rewind.step)
        if rewind.final_lr:  # fine-tuning: the schedule's final learning rate throughout
            final_lr = plan.lr(plan.total - 1)
            return replace(plan, lr=lambda step: final_lr)
        return plan

    # -- weights, masks, files ---------------------------------------------------------------------------------
    def fresh_model(self, seed: int, pretrained: bool = True) -> nn.Module:
        if self.build is not None:
            return self.build(seed, pretrained)
        return model_for(self.cfg, self.splits, seed, pretrained)

    def weights(self, path: Path) -> nn.Module:
        return load_weights(path, self.fresh_model(self.cfg.seeds.init))

    def final_weights(self, level: int) -> nn.Module:
        return self.weights(self.store.level(level) / "final.safetensors")

    def level_masks(self, level: int) -> Masks:
        """The masks of `level`; this level's and the previous one's are kept (`goes_on` compares them)."""
        if level not in self._masks:
            masks = level_masks(self.cfg, self.store, level, self.model, self.final_weights)
            self._masks = {k: v for k, v in self._masks.items() if k == level - 1} | {level: masks}
        return self._masks[level]

    @cached_property
    def training(self) -> Training:
        return Training(self.cfg.train, self.splits, self.model, self.cfg.data.augment, self.accelerator, self.progress,
                        self.task)

    def plan(self) -> Plan:
        return make_plan(self.cfg.train, len(self.splits.train), self.cfg.data.batch_size, self.cfg.seeds.data)

    def stage_dir(self, level: int, kind: str) -> Path:
        return self.store.level(level) if kind == "imp" else self.store.baseline(level, kind)

    def summary(self, level: int) -> dict:
        return read_json(self.store.level(level) / "summary.json")


def should_stop(lottery: LotteryConfig, summary: dict, dense: dict) -> bool:
    """The last level: at most `target_density` dense, or `max_drop` below the dense level's validation accuracy."""
    if lottery.target_density is not None and summary["density"] <= lottery.target_density:
        return True
    return lottery.max_drop is not None and dense["best_val_acc"] - summary["best_val_acc"] > lottery.max_drop


def open_store(runs_dir: str | Path, cfg: Config, preset: str | None, model: Fingerprint) -> RunStore:
    """The run directory, checked against the config and the model; data-parallel, rank 0 creates it first."""
    store = RunStore.open(runs_dir, cfg, preset, fingerprint=model) if distributed.is_main() else None
    distributed.barrier()
    return store or RunStore.open(runs_dir, cfg, preset, fingerprint=model)


def model_for(cfg: Config, splits, seed: int, pretrained: bool = True) -> nn.Module:
    """The model sized for the data: output classes from the dataset (never a silent 10); the input shape, the
    dataset's model options (e.g. its graph), `model.path` and `pretrained` for factories that take a parameter of
    that name."""
    offered = {"input_shape": tuple(splits.input_shape), "path": cfg.model.path, "pretrained": pretrained,
               **splits.model_options}
    accepted = inspect.signature(model_info(cfg.model.name).factory).parameters
    options = {k: v for k, v in offered.items() if k in accepted and v is not None}
    return build_model(cfg.model.name, num_classes=splits.num_classes, seed=seed, **options)


def splits_of(cfg: Config):
    """The run's data: its dataset, validation carved as the config says."""
    return load_dataset(cfg.data.name, root=cfg.data.root, val_size=cfg.data.val_size, seed=cfg.seeds.data,
                        **dataset_options(cfg))


def dataset_options(cfg: Config) -> dict:
    """Options for dataset sources that take them: the tokenizer directory of text datasets."""
    from ticketlab.data import DATASETS

    tokenizer = cfg.data.tokenizer or cfg.model.path
    accepted = inspect.signature(DATASETS.get(cfg.data.name)).parameters
    return {"tokenizer": tokenizer} if tokenizer and "tokenizer" in accepted else {}
