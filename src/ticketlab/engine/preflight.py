"""Checks a run passes before its run directory is made or touched: where it goes, the data's splits, and what
training and pruning will ask of the config once the data's size is known. A run that fails here writes nothing."""

from pathlib import Path

from torch import nn

from ticketlab.core.masks import match_names, prunable_names
from ticketlab.engine.config import Config
from ticketlab.engine.level_masks import of_remaining
from ticketlab.engine.optimizers import make_optimizer
from ticketlab.engine.rewind import rewind_for
from ticketlab.engine.schedule import make_plan
from ticketlab.engine.training import autocast, resolve_device
from ticketlab.errors import TicketlabError


def check_runs_dir(runs_dir: str | Path) -> None:
    """`runs_dir` is a directory or can become one: no file in its place or on its path."""
    path = Path(runs_dir)
    for part in [path, *path.parents]:
        if part.exists():
            if not part.is_dir():
                what = "--runs-dir" if part == path else f"--runs-dir {runs_dir}: its parent"
                raise TicketlabError(f"{what} {part} is a file, not a directory; choose another --runs-dir")
            return


def check_splits(cfg: Config, splits) -> None:
    """Every split has samples: an empty test split would record accuracy 0.0, an empty training split no steps."""
    for name in ("train", "val", "test"):
        if len(getattr(splits, name)) == 0:
            raise TicketlabError(f"dataset {cfg.data.name!r} has an empty {name} split (0 samples); check data.root "
                                 f"and the data files")


def check_training(cfg: Config, model: nn.Module, n_train: int) -> None:
    """The plan (durations in steps, the rewind point within them), the optimizer's settings and, for pruning by the
    original count, that every level leaves something to prune."""
    autocast(cfg.train, resolve_device(cfg.train.device))  # fp16 needs CUDA
    plan = make_plan(cfg.train, n_train, cfg.data.batch_size, cfg.seeds.data)
    rewind_for(cfg.lottery.rewind, plan.total, plan.steps_per_epoch)
    try:
        make_optimizer([p for p in model.parameters() if p.requires_grad][:1], cfg.train)
    except (ValueError, RuntimeError) as e:  # torch.optim's own checks, should ours miss one
        raise TicketlabError(f"train.{cfg.train.optimizer} refuses these settings: {e}") from None
    if cfg.lottery.levels >= 1:  # the patterns must name parameters: found now, not after level 0 has trained
        names = prunable_names(model)
        match_names(names, cfg.prune.exclude, "exclude pattern")
        match_names(names, cfg.prune.rates, "rate pattern")
    if cfg.prune.rate_of == "original" and cfg.lottery.levels >= 1:
        for rate in [cfg.prune.rate, *cfg.prune.rates.values()]:
            of_remaining(rate, cfg.lottery.levels)
