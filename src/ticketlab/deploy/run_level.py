"""One level of a run directory as a model: the run's architecture (from its config.json and data set) with the
level's final weights and masks applied, and a batch of its test data to trace and check exports with."""

from pathlib import Path

import torch
from torch import nn

from ticketlab.core.files import read_json
from ticketlab.core.masks import Masks
from ticketlab.deploy.export import _level_dir
from ticketlab.engine.config import from_dict
from ticketlab.engine.lottery import model_for, splits_of
from ticketlab.engine.store import load_weights
from ticketlab.errors import TicketlabError

EXAMPLES = 2  # test examples in the traced batch


def level_model(run_dir, level: int | None) -> tuple[nn.Module, Masks, torch.Tensor, int]:
    """(model with the level's weights, masks applied; its masks; a batch of test inputs; the level number)."""
    run_dir = Path(run_dir)
    stage = _level_dir(run_dir, level)
    for name in ("masks.safetensors", "final.safetensors"):
        if not (stage / name).exists():
            raise TicketlabError(f"{stage} has no {name}: the level has not finished training")
    if not (run_dir / "config.json").exists():
        raise TicketlabError(f"{run_dir} has no config.json: not a ticketlab run directory")
    cfg = from_dict(read_json(run_dir / "config.json").get("config"))
    splits = splits_of(cfg)
    model = load_weights(stage / "final.safetensors", model_for(cfg, splits, cfg.seeds.init)).eval()
    masks = Masks.load(stage / "masks.safetensors")
    masks.check(model)
    masks.apply(model)
    example = splits.test.x[:EXAMPLES]
    input_dtype = getattr(model, "input_dtype", None)
    if input_dtype is not None:
        example = example.to(input_dtype)
    return model, masks, example, int(stage.name[6:])
