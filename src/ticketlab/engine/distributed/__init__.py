"""Data-parallel training (DistributedDataParallel) for `ticketlab run --nproc N` or under `torchrun`.

Every rank loads the same data and builds the same model from the same seeds. The global batch of a step (the
single-process batch) is split into contiguous shares, one per rank, and each rank's loss is scaled so that DDP's
gradient average is the gradient of the global mean loss: the update is the single-process one up to float summation
order. Rank 0 computes the masks of a level and broadcasts them; before a stage trains, every rank checks by hash
that it holds the same masks. Only rank 0 writes files; the others wait at barriers. `launch` runs the workers
under torchrun's elastic launcher and turns a failed worker into one line; `worker` is each rank's side.

group.py: who am I and the process group; steps.py: a training step split over the ranks; masks.py: masks across
ranks; launcher.py: `launch` and its one-line failures; worker.py: a rank's side. Callers use `distributed.<name>`:
every name is re-exported here. A test that monkeypatches a function called from inside this package must patch the
submodule that calls it (e.g. `ticketlab.engine.distributed.masks.is_main`), not this package."""

from ticketlab.engine.distributed.group import (
    TIMEOUT_ENV,
    active,
    any_rank,
    backend_for,
    barrier,
    check_nproc,
    comm_device,
    init,
    is_main,
    launched,
    rank,
    shutdown,
    world_size,
)
from ticketlab.engine.distributed.launcher import ERRORS_ENV, PARENT_ENV, PEER_LOST, failure_message, free_port, launch
from ticketlab.engine.distributed.masks import (
    broadcast_bytes,
    check_same_masks,
    from_rank_zero,
    masks_digest,
    masks_from_bytes,
    masks_to_bytes,
)
from ticketlab.engine.distributed.steps import mean_over_ranks, shard, shard_loss, step_seed, wrap
from ticketlab.engine.distributed.worker import die_with_parent, leave, report, worker

__all__ = [
    "ERRORS_ENV", "PARENT_ENV", "PEER_LOST", "TIMEOUT_ENV",
    "active", "any_rank", "backend_for", "barrier", "check_nproc", "comm_device", "init", "is_main", "launched", "rank",
    "shutdown", "world_size",
    "mean_over_ranks", "shard", "shard_loss", "step_seed", "wrap",
    "broadcast_bytes", "check_same_masks", "from_rank_zero", "masks_digest", "masks_from_bytes", "masks_to_bytes",
    "failure_message", "free_port", "launch",
    "die_with_parent", "leave", "report", "worker",
]
