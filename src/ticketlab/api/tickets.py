"""What `find_tickets` returns: the run directory, read back — each level's summary, masks and weights."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ticketlab.core.files import read_json
from ticketlab.core.masks import Masks
from ticketlab.engine.store import RunStore, load_weights
from ticketlab.errors import TicketlabError


@dataclass(frozen=True)
class Tickets:
    """`print(tickets)` shows dense vs the best ticket vs the baselines, as `ticketlab report` does."""

    store: RunStore
    build: Callable[[int, bool], nn.Module]

    @property
    def root(self) -> Path:
        return self.store.root

    def levels(self) -> list[int]:
        return self.store.levels()

    def stage(self, level: int, kind: str = "imp") -> Path:
        path = self.store.level(level) if kind == "imp" else self.store.baseline(level, kind)
        if not (path / "summary.json").exists():
            raise TicketlabError(f"{self.root.name} has no finished {kind} stage at level {level}; "
                                 f"levels: {self.levels()}")
        return path

    def summary(self, level: int, kind: str = "imp") -> dict:
        """Density, accuracy at early stop, parameter and MAC counts... (docs/run-directory.md)."""
        return read_json(self.stage(level, kind) / "summary.json")

    def masks(self, level: int, kind: str = "imp") -> Masks:
        return Masks.load(self.stage(level, kind) / "masks.safetensors")

    def model(self, level: int, kind: str = "imp") -> nn.Module:
        """The stage's trained model (pruned weights exactly zero)."""
        return load_weights(self.stage(level, kind) / "final.safetensors", self.build(0, True))

    def __str__(self) -> str:
        from ticketlab.report import load_runs, summary_table

        return summary_table(load_runs([self.root]))
