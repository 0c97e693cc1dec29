"""Listeners of metric rows: besides its metrics.jsonl, every row a stage writes goes to each sink open here.

    with sending_to(sink):          # sink(run: str, stage: str, row: dict); `close()` called at the end
        lottery.run()

A sink hears the run directory's name and the stage's path inside it ("level_01/baselines/random_pruning"), e.g.
ticketlab.integrations.tensorboard.TensorBoardRuns (`ticketlab run --tensorboard DIR`). Sinks only listen: what a run
writes and computes is the same with or without them, so they are not part of its identity."""

import contextlib
import re
from pathlib import Path

SINKS: list = []
LEVEL = re.compile(r"level_\d+$")


@contextlib.contextmanager
def sending_to(sink):
    SINKS.append(sink)
    try:
        yield sink
    finally:
        SINKS.remove(sink)
        sink.close()


def send(stage: Path, row: dict) -> None:
    if SINKS:
        parts = stage.parts
        at = max((i for i, p in enumerate(parts) if LEVEL.match(p)), default=len(parts) - 1)
        run, name = (parts[at - 1] if at else ""), "/".join(parts[at:])
        for sink in SINKS:
            sink(run, name, row)
