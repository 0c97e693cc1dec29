"""The theory experiments by name. Each registers a settings dataclass (defaults = default size), the overrides
that make its `--quick` size, the claim it tests, and `run(cfg, seed, out) -> summary dict`."""

from collections.abc import Callable
from dataclasses import dataclass, field

from ticketlab.core.registry import Registry


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str
    settings: type
    run: Callable
    quick: dict = field(default_factory=dict)


EXPERIMENTS: Registry[Experiment] = Registry("theory experiment")


def experiment(name: str, claim: str, settings: type, quick: dict):
    """Decorator registering `run(cfg, seed, out)` as the experiment `name`."""
    def add(run: Callable) -> Callable:
        EXPERIMENTS.register(name)(Experiment(name, claim, settings, run, quick))
        return run
    return add
