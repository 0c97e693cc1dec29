"""The thread policy: how many intra-op threads torch trains with. `train.threads` (or `--threads N`) is applied
once, at the edge that runs stages (commands/run.py, commands/demo.py, sweep/worker.py; `ticketlab bench` takes
--threads alone), never inside the engine. 0 keeps torch's default: OMP_NUM_THREADS when set, else one per core.
That default is kept rather than guessed from the load average so a run's numbers do not depend on what else the
machine was doing; on a busy machine pass --threads 1 (every stage's summary.json says which count it used)."""

from ticketlab.errors import TicketlabError


def apply_threads(threads: int) -> int:
    """torch.set_num_threads(threads) unless 0 (torch's default); returns the count torch now uses."""
    import torch

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise TicketlabError(f"threads must be 0 (torch's default) or a positive integer, got {threads!r}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def threads_override(threads: int | None) -> list[str]:
    """`--threads N` as a config override (none when the flag is absent)."""
    if threads is None:
        return []
    if threads < 0:
        raise TicketlabError(f"--threads must be 0 (torch's default) or a positive integer, got {threads}")
    return [f"train.threads={threads}"]

