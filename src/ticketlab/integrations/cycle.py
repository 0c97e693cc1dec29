"""The lottery cycle inside someone else's training loop: the state and steps the framework callbacks share.

A framework callback (integrations/huggingface.py, integrations/lightning.py) only translates its framework's events
into the five calls below; everything a level does lives here, once:

    begin_training(model, total_steps)   the trainer starts: masks applied, the rewind point θ0 saved on level 0
    before_optimizer_step()              pruned gradients zeroed (ticketlab.core.masked_update.MaskedUpdate)
    after_optimizer_step(step)           pruned weights zeroed again; θk saved after step k of level 0
    record_metrics(metrics)              the level's latest evaluation
    end_training(steps)                  the trainer stops

and the user moves from level to level with `levels(n)` (or `next_level()`): prune the trained weights by magnitude
(`PruneSpec`), reset the survivors to the rewind point, and the next training run starts from there. Between levels
`save(path)` writes the whole cycle and the model's weights to one safetensors file, and `load(path, model)` carries
on from it in another process.
"""

import dataclasses
import json
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from ticketlab.core.files import load_tensors, save_tensors
from ticketlab.core.masked_update import MaskedUpdate
from ticketlab.core.masks import Masks, match_names, prunable_names
from ticketlab.core.model_state import check_state
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.errors import TicketlabError

FORMAT = "ticketlab-lottery-cycle/1"


def check_rewind(rewind: str | int) -> int:
    """The rewind step: 0 for "init" (θ0, the weights as level 0 starts), k for θk, the weights after k steps."""
    if rewind == "init":
        return 0
    if isinstance(rewind, int) and not isinstance(rewind, bool) and rewind >= 0:
        return rewind
    raise TicketlabError(f"rewind must be 'init' or a step count >= 0 (late rewinding to θk), got {rewind!r}")


class LotteryCycle:
    """Iterative magnitude pruning with rewinding over training runs that a framework drives.

    Level 0 trains dense and saves the rewind point; `next_level()` prunes `spec.rate` of the remaining prunable
    weights (Linear and ConvNd weights, less `spec.exclude`), resets every parameter and buffer to the rewind point
    and zeroes the pruned weights; the next training run trains the survivors with the masks held, from a fresh
    optimizer state. `history` holds one row per level: level, density, sparsity, kept, steps, metrics."""

    def __init__(self, spec: PruneSpec | None = None, rewind: str | int = "init"):
        self.spec = PruneSpec() if spec is None else spec
        if not isinstance(self.spec, PruneSpec):
            raise TicketlabError(f"spec must be a ticketlab PruneSpec, got {type(self.spec).__name__}")
        self.rewind_step = check_rewind(rewind)
        self.level = 0
        self.model: nn.Module | None = None
        self.masks: Masks | None = None
        self.rewind_point: dict[str, torch.Tensor] | None = None
        self.history: list[dict] = []
        self._update: MaskedUpdate | None = None

    # -- the user's side -----------------------------------------------------------------------------------------
    def levels(self, n: int) -> Iterator[int]:
        """The levels up to level `n`: level 0 (dense), then `n` pruned levels (as `lottery.levels`); train once in the
        loop body; between bodies the model is pruned and rewound. A cycle that has trained its current level (one
        loaded from a file) starts with the next."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise TicketlabError(f"levels must be a whole number >= 0 (pruned levels after the dense level 0), "
                                 f"got {n!r}")
        if not self.trained():
            yield self.level
        while self.level < n:
            yield self.next_level()

    def trained(self) -> bool:
        """Whether the current level has finished a training run."""
        return bool(self.history) and self.history[-1]["steps"] > 0 and self._update is None

    def next_level(self) -> int:
        """Prune the trained weights, rewind the survivors; returns the new level."""
        if self.model is None:
            raise TicketlabError("level 0 has not trained yet: train it with this callback before pruning")
        if self.rewind_point is None:
            raise TicketlabError(f"rewind step {self.rewind_step} was never reached: level 0 trained "
                                 f"{self.history[0]['steps']} steps; choose a step below that, or 'init'")
        self.masks = prune(self.model, self.masks, self.spec)
        self.model.load_state_dict(self.rewind_point)  # copies into the same Parameter objects
        self.masks.apply(self.model)
        self.level += 1
        self._open_level()
        return self.level

    def save(self, path) -> None:
        """The cycle (spec, rewind step, level, masks, rewind point, history) and the model's weights, as one
        safetensors file, written atomically; between training runs only."""
        if self._update is not None:
            raise TicketlabError(f"level {self.level} is training: save the cycle between levels")
        if self.model is None:
            raise TicketlabError("nothing to save: level 0 has not started training with this cycle")
        tensors = {f"weights/{n}": t for n, t in _snapshot(self.model).items()}  # copies: tied weights share memory
        tensors |= {f"masks/{n}": t for n, t in self.masks.items()}
        tensors |= {f"rewind/{n}": t for n, t in (self.rewind_point or {}).items()}
        spec = dataclasses.asdict(self.spec)
        meta = {"format": FORMAT, "level": str(self.level), "rewind_step": str(self.rewind_step),
                "spec": json.dumps(spec), "history": json.dumps(self.history)}
        save_tensors(path, tensors, metadata=meta)

    @classmethod
    def load(cls, path, model: nn.Module):
        """The cycle saved at `path`, carried on with `model` (the same architecture), which gets the saved weights
        and masks: `levels(n)` then goes on with the level after the last one trained."""
        tensors, meta = load_tensors(path)
        if meta.get("format") != FORMAT:
            raise TicketlabError(f"{path} is not a saved lottery cycle (format {meta.get('format')!r})")
        try:
            spec = json.loads(meta["spec"])
            cycle = cls(PruneSpec(**spec | {"exclude": tuple(spec["exclude"])}), rewind=int(meta["rewind_step"]))
            level, history = int(meta["level"]), json.loads(meta["history"])
        except (KeyError, TypeError, ValueError) as e:
            raise TicketlabError(f"corrupt lottery cycle file {path}: {e}") from None
        part = {kind: {n.split("/", 1)[1]: t for n, t in tensors.items() if n.startswith(f"{kind}/")}
                for kind in ("weights", "masks", "rewind")}
        check_state(model, part["weights"], path)  # before loading anything: a refused file leaves the model as it was
        masks = Masks(part["masks"])
        masks.check(model)
        model.load_state_dict(part["weights"])
        masks = masks.to(next(model.parameters()).device)
        masks.apply(model)
        cycle.model, cycle.masks, cycle.level, cycle.history = model, masks, level, history
        cycle.rewind_point = part["rewind"] or None
        return cycle

    # -- the framework callback's side -----------------------------------------------------------------------------
    def begin_training(self, model: nn.Module, total_steps: int | float | None) -> None:
        """A training run of the current level starts on `model`, for `total_steps` optimizer steps if known."""
        if self.model is None:
            self._attach(model, total_steps)
        elif model is not self.model:
            raise TicketlabError(f"level {self.level} trains another model ({type(model).__name__}) than level 0: "
                                 "keep training the same model object across levels")
        self.masks.apply(model)
        self._update = MaskedUpdate.for_model(model, self.masks)
        if self.rewind_point is None and self.rewind_step == 0:
            self.rewind_point = _snapshot(model)

    def before_optimizer_step(self) -> None:
        if self._update is not None:
            self._update.before_step()

    def after_optimizer_step(self, step: int) -> None:
        """After the optimizer step that made `step` steps in all (counted from 1) in this training run."""
        if self._update is not None:
            self._update.after_step()
        if self.rewind_point is None and self.level == 0 and step == self.rewind_step:
            self.rewind_point = _snapshot(self.model)

    def record_metrics(self, metrics: Mapping) -> None:
        """The level's evaluation: numbers (or one-element tensors) by name; later values of a name replace earlier."""
        row = self.history[-1]["metrics"]
        for name, value in metrics.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[name] = value

    def end_training(self, steps: int) -> None:
        self.history[-1]["steps"] += steps
        self._update = None

    # -- inside --------------------------------------------------------------------------------------------------
    def _attach(self, model: nn.Module, total_steps) -> None:
        """Level 0's first run: check the spec and the rewind step against this model and its training length."""
        names = prunable_names(model)
        if not names:
            raise TicketlabError(f"{type(model).__name__} has no Linear or ConvNd weight: nothing to prune")
        _check_patterns(model, names, self.spec.exclude, "exclude")
        _check_patterns(model, names, self.spec.rates, "rate")
        if total_steps is not None and 0 < total_steps <= self.rewind_step:
            raise TicketlabError(f"rewind step {self.rewind_step} is beyond the {total_steps} training steps of "
                                 f"level 0; choose a step below {total_steps}, or 'init'")
        self.model, self.masks = model, Masks.ones(model, names=names)
        self._open_level()

    def _open_level(self) -> None:
        density = self.masks.density()
        self.history.append({"level": self.level, "density": density, "sparsity": 1.0 - density,
                             "kept": sum(self.masks.kept().values()), "steps": 0, "metrics": {}})


def _check_patterns(model: nn.Module, names: list[str], patterns, what: str) -> None:
    """Each pattern names a prunable parameter: checked before level 0 trains, not when pruning after it; the message
    shows a few names (a BERT has dozens)."""
    for pattern in patterns:
        try:
            match_names(names, [pattern])
        except TicketlabError:
            shown = ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")
            raise TicketlabError(f"PruneSpec {what} pattern {pattern!r} matches no prunable parameter of "
                                 f"{type(model).__name__}; prunable: {shown}") from None


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, copied to the CPU (the accelerator's memory is the model's): the rewind point."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
