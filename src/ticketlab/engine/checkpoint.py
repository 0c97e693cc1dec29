"""Resumable checkpoints (`checkpoint.safetensors`): weights, optimizer state, torch RNG state and the books' `extra`.

A checkpoint is checked whole before anything is restored from it. One that is truncated, empty, lacks a part,
holds tensors of other shapes or claims a step outside the stage's plan is corrupt: it is renamed aside to
`checkpoint.corrupt-<n>.safetensors` (said once on stderr) and the stage restarts from its start, its last good
state; the weights, optimizer and RNG are untouched until the checkpoint has passed. In a data-parallel run every
rank judges the checkpoint, and all restart alike if any finds it corrupt; only rank 0 renames it."""

import json
import math
import os
import sys
from pathlib import Path

import torch
from torch import nn

from ticketlab.core.files import file_errors, load_tensors, save_tensors
from ticketlab.engine import distributed
from ticketlab.errors import TicketlabError

EXTRA_KEYS = ("step", "loss_sum", "loss_count", "wall")  # what the books need (engine/bookkeeping.py)


class Corrupt(TicketlabError):
    """A checkpoint that cannot be resumed from."""


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, extra: dict) -> None:
    """Model, optimizer state, torch RNG state and `extra` (JSON-able: step, accumulators) in one atomic file."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_meta = {}
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = value
            else:
                opt_meta[f"{idx}.{key}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"extra": json.dumps(extra), "optimizer": json.dumps(opt_meta)}
    save_tensors(path, tensors, metadata=meta)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, plan=None) -> dict | None:
    """Restore what `save_checkpoint` wrote and return its `extra`; a corrupt checkpoint is quarantined and None
    returned (start the stage afresh). `plan` (an engine.schedule.Plan): the step must lie in [start, total]."""
    parts = judged(path, model, plan)
    if parts is None:
        return None
    extra, model_state, opt_state, rng = parts
    model.load_state_dict(model_state)
    optimizer.load_state_dict({"state": opt_state, "param_groups": optimizer.state_dict()["param_groups"]})
    torch.set_rng_state(rng)
    return extra


def vet(path: Path, model: nn.Module, plan=None) -> bool:
    """Whether a sound checkpoint is at `path` (for trainers that read its step before restoring it); a corrupt one
    is quarantined first."""
    return path.exists() and judged(path, model, plan) is not None


def judged(path: Path, model: nn.Module, plan) -> tuple | None:
    """`check` on every rank of a data-parallel run (or the one process): a checkpoint found corrupt on any rank is
    corrupt on all. Rank 0 alone moves it aside, after every rank has read it (the verdict is a collective) and
    before any goes on (a barrier), so every rank restarts the stage alike; None then."""
    try:
        parts, why = check(path, model, plan), None
    except Corrupt as e:
        parts, why = None, str(e)
    if not distributed.any_rank(why is not None):
        return parts
    if distributed.is_main():
        quarantine(path, why or "found corrupt by another rank")
    distributed.barrier()
    return None


def check(path: Path, model: nn.Module, plan) -> tuple[dict, dict, dict, torch.Tensor]:
    """(extra, model state, optimizer state, RNG state) of a checkpoint that fits `model` and `plan`, else Corrupt."""
    try:
        tensors, meta = load_tensors(path)
    except TicketlabError as e:
        if not path.exists():
            raise
        raise Corrupt(str(e).split(": ", 1)[-1]) from None
    try:
        extra, opt_meta = json.loads(meta["extra"]), json.loads(meta["optimizer"])
    except (KeyError, json.JSONDecodeError, RecursionError):
        raise Corrupt("bad metadata") from None
    check_extra(extra, plan)
    own = model.state_dict()
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    for name in sorted(set(own) | set(state)):
        if name not in state or name not in own:
            raise Corrupt(f"tensor {name!r} {'missing' if name not in state else 'not in the model'}")
        if state[name].shape != own[name].shape or state[name].dtype != own[name].dtype:
            raise Corrupt(f"tensor {name!r} is {state[name].dtype} {tuple(state[name].shape)}, the model's "
                          f"{own[name].dtype} {tuple(own[name].shape)}")
    rng = tensors.get("rng.torch")
    expected = torch.get_rng_state()
    if rng is None or rng.dtype != expected.dtype or rng.shape != expected.shape:
        raise Corrupt("no valid torch RNG state")
    return extra, state, optimizer_state(tensors, opt_meta, model), rng


def check_extra(extra, plan) -> None:
    if not isinstance(extra, dict) or any(k not in extra for k in EXTRA_KEYS):
        raise Corrupt(f"'extra' must hold {', '.join(EXTRA_KEYS)}")
    step, count = extra["step"], extra["loss_count"]
    numbers = [extra["loss_sum"], extra["wall"]]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (step, count)):
        raise Corrupt(f"step {step!r} and loss_count {count!r} must be integers >= 0")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and not math.isinf(v) for v in numbers):
        raise Corrupt("loss_sum and wall must be numbers")
    if plan is not None and not plan.start <= step <= plan.total:
        raise Corrupt(f"step {step} is outside the stage's plan ({plan.start}..{plan.total})")


def optimizer_state(tensors: dict, opt_meta, model: nn.Module) -> dict[int, dict]:
    """The optimizer state by parameter index (the order of model.parameters()), its tensors checked against the
    parameters' shapes."""
    if not isinstance(opt_meta, dict):
        raise Corrupt("bad optimizer metadata")
    params = list(model.parameters())
    state: dict[int, dict] = {}
    for key, value in [*((k[4:], v) for k, v in tensors.items() if k.startswith("opt.")), *opt_meta.items()]:
        idx, _, name = key.partition(".")
        if not idx.isdigit() or int(idx) >= len(params) or not name:
            raise Corrupt(f"optimizer state {key!r} names no parameter")
        if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[int(idx)].shape:
            raise Corrupt(f"optimizer state {key!r} has shape {tuple(value.shape)}, its parameter "
                          f"{tuple(params[int(idx)].shape)}")
        state.setdefault(int(idx), {})[name] = value
    return state


def quarantine(path: Path, why: str) -> Path:
    """Rename a corrupt checkpoint aside to the first free `checkpoint.corrupt-<n>.safetensors`; say so once."""
    n = 1
    while (aside := path.with_name(f"{path.stem}.corrupt-{n}{path.suffix}")).exists():
        n += 1
    with file_errors(path, "move aside the corrupt checkpoint"):
        os.replace(path, aside)
    print(f"ticketlab: corrupt checkpoint {path} ({why}); moved aside to {aside.name}, the stage restarts from its "
          "start", file=sys.stderr, flush=True)
    return aside
