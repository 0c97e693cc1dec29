"""When a lottery stops before `lottery.levels`, besides its stopping rules (`target_density`, `max_drop`): IMP
diverged at the level just trained, the next level's pruning would leave a tensor with no weights (layer collapse),
or it would remove nothing (the network stopped changing: every further level would repeat this one). Each is said
once on stderr as `ticketlab: warning: ...`, and the run ends normally (exit status 0): its results are recorded."""

import sys

from ticketlab.core.masks import Masks
from ticketlab.core.pruning import collapsed
from ticketlab.engine.config import Config


def diverged(summary: dict, level: int) -> str | None:
    """Why no level follows a diverged IMP level (its final weights are no ticket to prune)."""
    if summary.get("status") != "diverged":
        return None
    return (f"IMP diverged at level {level} (level_{level:02d}/summary.json says why); no deeper level is pruned "
            f"from it: lower train.lr (a new setting, so a new run directory)")


def pruning(cfg: Config, before: Masks, after: Masks, level: int) -> str | None:
    """Why `level`, pruned to `after` from the previous level's `before`, is not trained."""
    kept, empty = after.kept(), collapsed(before, after)
    if empty and not cfg.lottery.allow_collapse:
        return (f"pruning for level {level} leaves no weights in {', '.join(empty)} (layer collapse); the lottery "
                f"stops before it (set prune.min_density to keep a floor per tensor, or lottery.allow_collapse=true "
                f"to go on)")
    if after == before and cfg.prune.rate_of == "remaining":
        return (f"pruning for level {level} removes no weights ({sum(kept.values())} kept: prune.rate "
                f"{cfg.prune.rate} of what remains rounds to 0); every further level would repeat level {level - 1}, "
                f"so the lottery stops")
    return None


def warn(text: str) -> None:
    print(f"ticketlab: warning: {text}", file=sys.stderr, flush=True)
