"""Independent, reproducible random streams: one torch.Generator per (seed, purpose, keys).

Initialisation, data, masks and pruning draw from separate streams, so changing one grid axis never shifts the
random numbers of another (and the same trial sees the same teacher in every cell of a grid)."""

import zlib

import torch


def stream(seed: int, purpose: str, *keys) -> torch.Generator:
    tag = "/".join([purpose, *map(str, keys)])
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(tag.encode())) % (2**63))
