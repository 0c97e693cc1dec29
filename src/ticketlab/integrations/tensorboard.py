"""Metric rows to TensorBoard (optional extra: `pip install 'ticketlab[tensorboard]'`).

    with TensorBoardSink("tb") as sink:
        sink("level_01", {"step": 100, "val_loss": 0.31, "val_acc": 0.91, "train_loss": None})
    tensorboard_from_run("runs/lenet300-mnist-1a2b3c4d5e", "tb")     # a finished (or live) run, after the fact

A row is one line of a stage's metrics.jsonl (docs/run-directory.md); every numeric field but "step" becomes a
scalar named by the field at that step, in the TensorBoard run `log_dir/<stage>`: one run per stage, so TensorBoard
draws the levels and baselines of a ticketlab run as lines of one chart per metric. Fields without a number (None:
the first row's train_loss) are skipped. A stage's writer starts at the first step it is given (TensorBoard's
`purge_step`): what an earlier writer wrote from that step on is dropped, so a resumed stage, which rewrites its rows
after its checkpoint, and a run converted twice show every step once.
"""

from pathlib import Path, PurePosixPath

from ticketlab.engine.store import read_metrics
from ticketlab.errors import TicketlabError

INSTALL = "pip install 'ticketlab[tensorboard]'"


def summary_writer_class(what: str = "TensorBoard logging"):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TicketlabError(f"{what} needs {INSTALL}") from None
    return SummaryWriter


def scalars(row: dict) -> dict[str, float]:
    """The numeric fields of a metric row but its step; NaN and infinities stay (a diverged stage shows them)."""
    return {k: float(v) for k, v in row.items()
            if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)}


class TensorBoardSink:
    """`sink(stage, row)` writes a metric row as TensorBoard scalars under `log_dir/<stage>`; `close()` flushes them."""

    def __init__(self, log_dir):
        self.log_dir, self.writers, self.writer_class = Path(log_dir), {}, summary_writer_class()

    def __call__(self, stage: str, row: dict) -> None:
        step = row.get("step") if isinstance(row, dict) else None
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            shown = f"{row.get('step')!r}" if isinstance(row, dict) else f"a {type(row).__name__}"
            raise TicketlabError(f"metric row for {stage!r} needs an integer 'step' >= 0, got {shown}")
        if stage not in self.writers:
            if not stage or PurePosixPath(stage).is_absolute() or ".." in PurePosixPath(stage).parts:
                raise TicketlabError(f"stage {stage!r} is not a relative path inside the log directory")
            self.writers[stage] = self.writer_class(log_dir=str(self.log_dir / stage), purge_step=step)
        for field, value in scalars(row).items():
            self.writers[stage].add_scalar(field, value, step)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.flush()
            writer.close()

    def __enter__(self) -> "TensorBoardSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TensorBoardRuns:
    """A sink of ticketlab.engine.metric_sinks: the rows of each run directory go to `log_dir/<run name>/<stage>`
    (seeds and presets stay apart)."""

    def __init__(self, log_dir):
        self.log_dir, self.sinks = Path(log_dir), {}
        summary_writer_class("--tensorboard")

    def __call__(self, run: str, stage: str, row: dict) -> None:
        if run not in self.sinks:
            self.sinks[run] = TensorBoardSink(self.log_dir / run)
        self.sinks[run](stage, row)

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()


def tensorboard_from_run(run_dir, log_dir) -> int:
    """Every stage's metrics.jsonl under `run_dir` (levels and baselines) as TensorBoard scalars in `log_dir/<stage>`,
    the stage named by its path, e.g. "level_01/baselines/random_pruning"; returns the number of rows written."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.rglob("metrics.jsonl"))
    if not files:
        raise TicketlabError(f"{run_dir} holds no metrics.jsonl: not a run directory, or no stage has started")
    written = 0
    with TensorBoardSink(log_dir) as sink:
        for path in files:
            stage = path.parent.relative_to(run_dir).as_posix()
            for row in read_metrics(path):
                sink(stage, row)
                written += 1
    return written

