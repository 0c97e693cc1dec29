"""Data-parallel training (DistributedDataParallel) for `ticketlab run --nproc N` or under `torchrun`.

Every rank loads the same data and builds the same model from the same seeds. The global batch of a step (the
single-process batch) is split into contiguous shares, one per rank, and each rank's loss is scaled so that DDP's
gradient average is the gradient of the global mean loss: the update is the single-process one up to float summation
order. Rank 0 computes the masks of a level and broadcasts them; before a stage trains, every rank checks by hash
that it holds the same masks. Only rank 0 writes files; the others wait at barriers. `launch` runs the workers
under torchrun's elastic launcher and turns a failed worker into one line; `worker` is each rank's side."""

import ctypes
import datetime
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .errors import TicketlabError
from .masks import Masks, pack_bits, unpack_bits

ERRORS_ENV = "TICKETLAB_DDP_ERRORS"  # directory where workers leave their one-line error (set by `launch`)
PARENT_ENV = "TICKETLAB_DDP_PARENT"  # pid of the launcher: a worker whose launcher is gone exits at once
TIMEOUT_ENV = "TICKETLAB_DDP_TIMEOUT"  # seconds a collective may wait for the other ranks (default 30 minutes)
PEER_LOST = 3  # exit status of a worker that stopped because another rank vanished (a consequence, not the cause)


# -- who am I ----------------------------------------------------------------------------------------------------
def launched() -> bool:
    """True in a process started by torchrun (or `launch`) as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


# -- checks at the boundary --------------------------------------------------------------------------------------
def check_nproc(nproc: int, batch_size: int, device: torch.device) -> None:
    """Refuse what cannot split evenly or run: batch sizes, devices."""
    if nproc < 1:
        raise TicketlabError(f"--nproc {nproc} must be a positive number of processes")
    if batch_size % nproc:
        raise TicketlabError(f"data.batch_size {batch_size} does not split over {nproc} processes; "
                             f"choose a multiple of {nproc} (each rank takes batch_size / {nproc} of every batch)")
    if device.type == "cuda" and nproc > 1:
        if device.index is not None:
            raise TicketlabError(f"train.device {device} names one GPU for {nproc} processes; use train.device=cuda "
                                 f"(rank r uses cuda:r)")
        if nproc > torch.cuda.device_count():
            raise TicketlabError(f"--nproc {nproc} needs {nproc} GPUs, this machine has {torch.cuda.device_count()}")
    elif device.type not in ("cpu", "cuda") and nproc > 1:
        raise TicketlabError(f"data-parallel training runs on cpu (gloo) or cuda (nccl), not {device.type}")


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


# -- process group -----------------------------------------------------------------------------------------------
def init(device: torch.device) -> None:
    """Join the process group torchrun set up (env: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)."""
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" now means this rank's GPU
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 1800)))
    dist.init_process_group(backend_for(device), timeout=timeout)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def comm_device() -> torch.device:
    """Where collective tensors live: NCCL moves CUDA tensors only."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# -- training ----------------------------------------------------------------------------------------------------
def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of the rows of a global batch (the shares, in rank order, make up `batch`)."""
    return torch.tensor_split(batch, world_size())[rank()] if active() else batch


def step_seed(data_seed: int, step: int) -> int:
    """The torch seed of `step` on this rank: dropout draws are a pure function of (seed, step, rank), so a resumed
    run draws what the uninterrupted one drew (one saved RNG state could not hold every rank's) and ranks differ."""
    return ((data_seed * 1_000_003 + step) * 1009 + rank()) % (2**63)


def shard_loss(logits: torch.Tensor, y: torch.Tensor, global_batch: int) -> torch.Tensor:
    """This rank's loss, scaled so that DDP's average over ranks is the mean loss of the global batch (exact also
    for the short last batch of an epoch, whose shares differ in size by one)."""
    return F.cross_entropy(logits, y, reduction="sum") * (world_size() / global_batch)


def mean_over_ranks(loss: torch.Tensor) -> torch.Tensor:
    """The global batch's mean loss from each rank's `shard_loss` (the same value on every rank)."""
    if not active():
        return loss
    total = loss.detach().clone().to(comm_device())
    dist.all_reduce(total)
    return total / world_size()


def wrap(model: nn.Module) -> nn.Module:
    """DDP around `model`: its construction broadcasts rank 0's weights and buffers, backward averages gradients."""
    if not active():
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# -- masks -------------------------------------------------------------------------------------------------------
def masks_to_bytes(masks: Masks) -> bytes:
    shapes = {n: list(t.shape) for n, t in masks.items()}
    return st_save({n: pack_bits(t.cpu()) for n, t in masks.items()}, metadata={"shapes": json.dumps(shapes)})


def masks_from_bytes(data: bytes) -> Masks:
    packed = st_load(data)
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    shapes = json.loads(header["__metadata__"]["shapes"])
    return Masks({n: unpack_bits(packed[n], shape) for n, shape in shapes.items()})


def masks_digest(masks: Masks) -> str:
    """sha256 of the packed masks, names and shapes (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(masks):
        t = masks[name]
        h.update(f"{name}:{list(t.shape)};".encode())
        h.update(pack_bits(t.cpu()).numpy().tobytes())
    return h.hexdigest()


def broadcast_bytes(data: bytes | None) -> bytes:
    """Rank 0's `data` on every rank."""
    device = comm_device()
    size = torch.tensor([len(data) if is_main() else 0], dtype=torch.int64, device=device)
    dist.broadcast(size, 0)
    if is_main():
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    else:
        buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    dist.broadcast(buffer, 0)
    return data if is_main() else bytes(buffer.cpu().numpy().tobytes())


def from_rank_zero(compute: Callable[[], Masks]) -> Masks:
    """Masks computed on rank 0 only (`compute` runs there) and broadcast to every rank."""
    if not active():
        return compute()
    data = broadcast_bytes(masks_to_bytes(compute()) if is_main() else None)
    return masks_from_bytes(data)


def check_same_masks(masks: Masks, what: str) -> None:
    """Refuse to train when the ranks hold different masks (compared by sha256 of the packed masks)."""
    if not active():
        return
    digest = torch.frombuffer(bytearray(bytes.fromhex(masks_digest(masks))), dtype=torch.uint8).to(comm_device())
    gathered = [torch.empty_like(digest) for _ in range(world_size())]
    dist.all_gather(gathered, digest)
    hexes = [bytes(t.cpu().numpy().tobytes()).hex() for t in gathered]
    odd = [r for r, h in enumerate(hexes) if h != hexes[0]]
    if odd:
        raise TicketlabError(f"masks of {what} differ across ranks (rank 0 sha256 {hexes[0][:12]}, rank {odd[0]} "
                             f"{hexes[odd[0]][:12]}); every rank must run the same ticketlab, torch and data")


# -- the launcher ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], nproc: int) -> None:
    """Run `ticketlab <argv>` as `nproc` ranks under torchrun's elastic launcher (in this process); a failed rank
    becomes one line: its own error message, or which rank died."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)  # failures are reported below, in one line
    with tempfile.TemporaryDirectory(prefix="ticketlab-ddp-") as tmp:
        os.environ[ERRORS_ENV], os.environ[PARENT_ENV] = tmp, str(os.getpid())
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        config = LaunchConfig(
            min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"ticketlab-{os.getpid()}",
            rdzv_backend="static", rdzv_endpoint=f"127.0.0.1:{free_port()}", rdzv_configs={"rank": 0},
            max_restarts=0, logs_specs=DefaultLogsSpecs(log_dir=os.path.join(tmp, "logs")),
        )
        try:
            elastic_launch(config, sys.executable)("-u", "-m", "ticketlab.cli", *argv)
        except ChildFailedError as e:
            raise TicketlabError(failure_message(e.failures, Path(tmp))) from None
        except SignalException:
            raise KeyboardInterrupt from None


def failure_message(failures: dict, errors: Path) -> str:
    """The lowest rank's own error message if a rank left one, else which rank died first and how."""
    reported = sorted(errors.glob("rank*.txt"), key=lambda p: int(p.stem[4:]))
    if reported:
        return reported[0].read_text().strip()
    # The launcher stops the other ranks with SIGTERM once one fails; those, and ranks that lost a peer, are not causes.
    causes = {r: f for r, f in failures.items() if f.exitcode not in (PEER_LOST, -signal.SIGTERM)} or failures
    first = min(causes, key=lambda r: (causes[r].timestamp, r))
    code, resume = causes[first].exitcode, "rerun the same command to resume from the last checkpoint"
    if code < 0:
        return f"rank {first} died (killed by {causes[first].signal_name()}); {resume}"
    if code == PEER_LOST:
        return f"rank {first} lost contact with the other ranks (a hang or a network failure); {resume}"
    return f"rank {first} failed (exit status {code}; its traceback is above); {resume}"


# -- a worker ----------------------------------------------------------------------------------------------------
def die_with_parent() -> None:
    """torchrun starts workers in sessions of their own, so kill -9 of the launcher's process group misses them:
    ask Linux to kill this process when its parent dies, and stop now if the launcher is already gone."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):
        os._exit(PEER_LOST)


def worker(device: torch.device, run: Callable[[], None]) -> int:
    """One rank: join the group, `run()`, leave. A user error is reported once (through the launcher) with exit
    status 2; a rank that stops because another vanished exits quietly with PEER_LOST."""
    die_with_parent()
    try:
        init(device)
        run()
        return 0
    except TicketlabError as e:
        report(str(e))
        return 2
    except RuntimeError as e:  # gloo reports a vanished peer as a plain RuntimeError naming gloo
        if isinstance(e, dist.DistError) or "gloo" in str(e):
            return PEER_LOST
        raise
    finally:
        shutdown()


def report(message: str) -> None:
    me = int(os.environ.get("RANK", "0"))
    errors = os.environ.get(ERRORS_ENV)
    if errors and Path(errors).is_dir():
        (Path(errors) / f"rank{me}.txt").write_text(message + "\n")
    else:  # under a plain torchrun every rank speaks for itself
        print(f"ticketlab: error: rank {me}: {message}", file=sys.stderr)
