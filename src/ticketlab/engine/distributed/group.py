"""Who am I among the ranks, and the process group itself: joining it, leaving it, where collectives run."""

import datetime
import os

import torch
import torch.distributed as dist

from ticketlab.errors import TicketlabError

TIMEOUT_ENV = "TICKETLAB_DDP_TIMEOUT"  # seconds a collective may wait for the other ranks (default 30 minutes)


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


def any_rank(flag: bool) -> bool:
    """Whether `flag` holds on any rank (the same answer on every rank): ranks that judged alike act alike."""
    if not active():
        return flag
    value = torch.tensor([int(flag)], device=comm_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


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
