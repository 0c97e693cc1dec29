"""Masks across ranks: rank 0's masks sent to every rank, and a hash check that all ranks hold the same masks."""

import hashlib
import json
from collections.abc import Callable

import torch
import torch.distributed as dist
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ticketlab.core.masks import Masks, pack_bits, unpack_bits
from ticketlab.engine.distributed.group import active, comm_device, is_main, world_size
from ticketlab.errors import TicketlabError


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
