"""Iterative Magnitude Pruning with rewinding, and its baselines, as a resumable run.

Level 0 trains the dense network. Each later level prunes the previous level's final weights, resets the survivors
to the rewind point and retrains. Every stage checks for its own output first, so running the same command again
resumes where a killed run stopped and ends with the same numbers. Which stages train when, batched or alone, is
the scheduler's (stages.py)."""

import inspect
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ticketlab.core.files import read_json, write_json_atomic
from ticketlab.core.masks import Masks, prunable_names
from ticketlab.core.pruning import PruneSpec, prune, random_like
from ticketlab.data import load_dataset
from ticketlab.data.augment import AUGMENTATIONS
from ticketlab.engine import distributed
from ticketlab.engine.accelerator import PURE_TORCH, Accelerator, Ticket
from ticketlab.engine.config import Config, parse_duration
from ticketlab.engine.schedule import make_plan
from ticketlab.engine.stages import Stage, remove_checkpoints, run_lotteries
from ticketlab.engine.store import RunStore, is_done, load_weights, save_weights
from ticketlab.engine.training import early_stop, resolve_device, train
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model, model_info

REINIT_SEED_OFFSET = 7919  # fresh initialisations for the random-reinit baseline: init seed + offset * level


@dataclass
class Lottery:
    """Everything one run needs, built once: config, store, data, the model and its plan."""

    cfg: Config
    store: RunStore
    splits: object
    model: nn.Module
    progress: bool = False
    accelerator: Accelerator = PURE_TORCH
    _batchable: bool | None = field(default=None, repr=False)

    @classmethod
    def open(cls, cfg: Config, runs_dir: str | Path, preset: str | None = None, progress: bool = False,
             accelerator: Accelerator = PURE_TORCH) -> "Lottery":
        resolve_device(cfg.train.device)  # an absent device is refused before anything is written
        splits = load_dataset(cfg.data.name, root=cfg.data.root, seed=cfg.seeds.data, **dataset_options(cfg))
        model = model_for(cfg, splits, cfg.seeds.init)
        expected = tuple(model.input_shape)
        if math.prod(expected) != math.prod(splits.input_shape):
            raise TicketlabError(
                f"model {cfg.model.name!r} takes input {expected}, dataset {cfg.data.name!r} gives {splits.input_shape}"
            )
        return cls(cfg, open_store(runs_dir, cfg, preset), splits, model, progress, accelerator)

    # -- the plan ----------------------------------------------------------------------------------------------
    def plan(self, start: int = 0):
        plan = make_plan(self.cfg.train, len(self.splits.train), self.cfg.data.batch_size, self.cfg.seeds.data)
        plan.start = start
        return plan

    def rewind_step(self) -> int | None:
        """k for late rewinding to θk, 0 for θ0, None for no weight rewinding (fine-tuning, lr rewinding)."""
        rewind = self.cfg.lottery.rewind
        if rewind == "init":
            return 0
        if rewind in ("none", "lr"):
            return None
        plan = self.plan()
        k = parse_duration(rewind, plan.steps_per_epoch, "lottery.rewind")
        if k >= plan.total:
            raise TicketlabError(f"lottery.rewind {rewind!r} is step {k}, beyond the {plan.total} training steps")
        return k

    def spec(self, level: int) -> PruneSpec:
        p = self.cfg.prune
        rate, rates = p.rate, dict(p.rates)
        if p.rate_of == "original":  # remove `rate` of the original count: of the remaining 1 - rate*(level-1)
            rate, rates = of_remaining(rate, level), {k: of_remaining(r, level) for k, r in rates.items()}
        return PruneSpec(p.criterion, p.scope, rate, rates, tuple(p.exclude), seed=self.cfg.seeds.prune + level)

    # -- weights -----------------------------------------------------------------------------------------------
    def fresh_model(self, seed: int, pretrained: bool = True) -> nn.Module:
        return model_for(self.cfg, self.splits, seed, pretrained)

    def weights(self, path: Path) -> nn.Module:
        return load_weights(path, self.fresh_model(self.cfg.seeds.init))

    def start_point(self, level: int) -> tuple[nn.Module, int, object]:
        """Weights, first step and plan a level >= 1 starts from, by the rewinding mode."""
        k, plan = self.rewind_step(), self.stage_plan(level)
        if k is None:
            return self.weights(self.store.level(level - 1) / "final.safetensors"), 0, plan
        source = self.store.init_path if k == 0 else self.store.rewind_path
        return self.weights(source), k, plan

    def stage_plan(self, level: int):
        """The plan of every stage of `level`: the full schedule at level 0; later, from the rewind step."""
        k = self.rewind_step()
        if level == 0 or k is not None:
            return self.plan(start=k if level else 0)
        plan = self.plan()
        if self.cfg.lottery.rewind == "none":  # fine-tune at the schedule's final learning rate
            final_lr = plan.lr(plan.total - 1)
            plan.lr = lambda step: final_lr
        return plan

    # -- stages ------------------------------------------------------------------------------------------------
    def run_stage(self, stage: Path, kind: str, level: int, model: nn.Module, masks: Masks, plan, snapshot=None):
        """Train one stage alone unless its summary exists; write masks, final weights and summary (last)."""
        if is_done(stage):
            return read_json(stage / "summary.json")
        distributed.check_same_masks(masks, f"level {level} {kind}")  # data-parallel: refuse ranks that differ
        main = distributed.is_main()  # data-parallel: rank 0 alone writes the stage's files
        if main:
            self.begin_stage(stage, masks)
        started = time.perf_counter()
        rows = train(model, masks, self.splits, self.cfg.train, plan, stage, snapshot=snapshot,
                     augment=AUGMENTATIONS.get(self.cfg.data.augment), progress=self.progress,
                     desc=f"level {level} {kind}", accelerator=self.accelerator)
        wall = time.perf_counter() - started
        summary = self.finish_stage(stage, kind, level, model, masks, plan, rows, wall) if main else None
        distributed.barrier()  # the other ranks read what rank 0 wrote
        return summary if main else read_json(stage / "summary.json")

    def begin_stage(self, stage: Path, masks: Masks) -> None:
        stage.mkdir(parents=True, exist_ok=True)
        masks.save(stage / "masks.safetensors")

    def finish_stage(self, stage: Path, kind: str, level: int, model: nn.Module, masks: Masks, plan, rows: list,
                     wall: float, batched: int = 1) -> dict:
        """Final weights, then the summary (it marks the stage done), then the checkpoint goes: a run killed before
        the summary resumes from the checkpoint, never from scratch. `batched`: the stages trained with this one as
        one batched model (ticketlab.accel.batching), 1 when trained alone."""
        save_weights(stage / "final.safetensors", model.cpu())
        summary = {"level": level, "kind": kind, "status": "done", "steps": plan.total - plan.start, "wall": wall,
                   "batched": batched, **early_stop(rows), **self.counts(model, masks)}
        write_json_atomic(stage / "summary.json", summary)
        remove_checkpoints(stage)
        return summary

    def counts(self, model: nn.Module, masks: Masks) -> dict:
        total = sum(p.numel() for p in model.parameters())
        kept, numel = sum(masks.kept().values()), sum(masks.numels().values())
        return {
            "density": masks.density(), "sparsity": masks.sparsity(), "kept": kept, "prunable": numel,
            "params_total": total, "params_kept": total - (numel - kept),
            "layer_density": masks.densities(), **macs(model, masks, self.splits.train.x[:64]),
        }

    def level_masks(self, level: int) -> Masks:
        """Level 0: all ones. Level L: prune level L-1's final weights (saved masks are reused on resume).
        Data-parallel: computed on rank 0 and broadcast to the others."""
        return distributed.from_rank_zero(lambda: self.compute_masks(level))

    def compute_masks(self, level: int) -> Masks:
        path = self.store.level(level) / "masks.safetensors"
        if path.exists():
            return Masks.load(path)
        if level == 0:
            return Masks.ones(self.model, names=prunable_names(self.model))
        previous = self.store.level(level - 1)
        return prune(self.weights(previous / "final.safetensors"), Masks.load(previous / "masks.safetensors"),
                     self.spec(level))

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self) -> RunStore:
        return run_lotteries([self])[0]

    def stages(self, level: int) -> list[Stage]:
        """The stages of a level, done or not: IMP, then (from level 1) the baselines."""
        kinds = ["imp", *(self.cfg.lottery.baselines if level else [])]
        return [Stage(self, self.store.level(level) if kind == "imp" else self.store.baseline(level, kind), kind,
                      level) for kind in kinds]

    def prepare(self, stage: Stage, masks: Masks) -> Ticket:
        """Start weights, masks, plan (and the θk snapshot of level 0) of a stage; `masks` are the level's."""
        level, kind = stage.level, stage.kind
        desc = f"{self.store.root.name} level {level} {kind}"
        if level == 0:
            k, model = self.rewind_step(), self.weights(self.store.init_path)
            snapshot = (k, lambda m: save_weights(self.store.rewind_path, m)) if k else None
            return Ticket(model, masks, self.splits, self.plan(), stage.path, snapshot, desc)
        model, _, plan = self.start_point(level)
        if kind == "random_pruning":  # same start weights, random masks with the ticket's per-tensor densities
            masks = random_like(masks, seed=self.cfg.seeds.prune * 1000 + level)
        elif kind == "random_reinit":  # the ticket's masks, a fresh initialisation
            model = self.fresh_model(self.cfg.seeds.init + REINIT_SEED_OFFSET * level)
        elif kind == "oneshot":  # magnitude pruning of the dense final weights straight to this level's densities
            dense = self.weights(self.store.level(0) / "final.safetensors")
            masks = prune_to_counts(dense, masks, self.cfg.prune.criterion, self.cfg.seeds.prune + level)
        return Ticket(model, masks, self.splits, plan, stage.path, None, desc)

    def batch_key(self, level: int) -> tuple | None:
        """Stages with equal keys may train as one batched model; None: this run's stages train alone."""
        t = self.cfg.train
        if t.batch_tickets < 2 or t.precision != "fp32" or t.compile or t.channels_last or distributed.active():
            return None
        if self._batchable is None:
            self._batchable = self.accelerator.batchable(self.model, self.splits.input_shape)
        if not self._batchable:
            return None
        plan = self.stage_plan(level)
        schedule = (plan.start, plan.total, plan.steps_per_epoch, plan.batch_size, plan.eval_every,
                    plan.checkpoint_every, self.cfg.lottery.rewind if level else "")
        return (repr(self.model), tuple(self.splits.input_shape), repr(t), self.cfg.data.augment, schedule)

    def should_stop(self, summary: dict, dense: dict) -> bool:
        lottery = self.cfg.lottery
        if lottery.target_density is not None and summary["density"] <= lottery.target_density:
            return True
        return lottery.max_drop is not None and dense["best_val_acc"] - summary["best_val_acc"] > lottery.max_drop


def open_store(runs_dir: str | Path, cfg: Config, preset: str | None) -> RunStore:
    """The run directory; data-parallel, rank 0 creates it before the other ranks open it."""
    store = RunStore.open(runs_dir, cfg, preset) if distributed.is_main() else None
    distributed.barrier()
    return store or RunStore.open(runs_dir, cfg, preset)


def model_for(cfg: Config, splits, seed: int, pretrained: bool = True) -> nn.Module:
    """The model sized for the data: output classes from the dataset (never a silent 10); the input shape, the
    dataset's model options (e.g. its graph), `model.path` and `pretrained` for factories that take a parameter of
    that name."""
    offered = {"input_shape": tuple(splits.input_shape), "path": cfg.model.path, "pretrained": pretrained,
               **splits.model_options}
    accepted = inspect.signature(model_info(cfg.model.name).factory).parameters
    options = {k: v for k, v in offered.items() if k in accepted and v is not None}
    return build_model(cfg.model.name, num_classes=splits.num_classes, seed=seed, **options)


def dataset_options(cfg: Config) -> dict:
    """Options for dataset sources that take them: the tokenizer directory of text datasets."""
    from ticketlab.data import DATASETS

    tokenizer = cfg.data.tokenizer or cfg.model.path
    accepted = inspect.signature(DATASETS.get(cfg.data.name)).parameters
    return {"tokenizer": tokenizer} if tokenizer and "tokenizer" in accepted else {}


def of_remaining(rate_of_original: float, level: int) -> float:
    """The rate of the remaining weights that removes `rate_of_original` of the original ones at `level`."""
    remaining = 1.0 - rate_of_original * (level - 1)
    if remaining <= rate_of_original:
        raise TicketlabError(f"prune.rate {rate_of_original} of the original weights leaves nothing to prune at level "
                             f"{level}; lower lottery.levels to at most {int(1 / rate_of_original) - 1}")
    return rate_of_original / remaining


def prune_to_counts(model: nn.Module, reference: Masks, criterion: str, seed: int) -> Masks:
    """One round from all-ones that keeps exactly as many weights per tensor as `reference`."""
    ones = Masks.ones(model, names=list(reference))
    rates = {n: 1 - reference.kept()[n] / n_all for n, n_all in reference.numels().items()}
    # Exact counts: every tensor gets its own rate, so round_half_up(rate * numel) == numel - kept.
    return prune(model, ones, PruneSpec(criterion=criterion, scope="layer", rate=0.0, rates=rates, seed=seed))


def macs(model: nn.Module, masks: Masks, example: torch.Tensor) -> dict:
    """Dense and kept MACs per example (ticketlab.core.counting), for the summary."""
    from ticketlab.core.counting import count

    counts = count(model, masks, example)
    return {"macs_dense": counts.macs_dense, "macs_kept": counts.macs_weight_sparse}
