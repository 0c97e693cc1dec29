"""The heap policy: large tensors reuse freed heap memory instead of fresh pages from the system.

glibc's malloc maps every allocation above its mmap threshold (128 KiB, rising to at most 32 MiB) to pages of its own
and unmaps them when it is freed, so a tensor that large is page-faulted in and zeroed by the operating system every
time one is made. A training step makes the same large activations every step (8 stacked Conv-6 copies: 126 MB for one
layer's output), so that cost about 8% of a batched Conv-6 step and 4% of a sequential one
(benchmarks/ticket_batching.py). Applied once by the command line for its whole process (cli.py), to the same end as
the allocators PyTorch's CPU tuning guides preload (jemalloc, tcmalloc), but with the C library already loaded: freed
memory stays in the process for the next step (the process holds on to its peak use until it exits)."""

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
KEEP_AT_MOST = 2**31 - 1  # bytes of freed memory at the heap's top kept rather than returned (mallopt takes an int)


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep what is freed there (glibc; elsewhere nothing changes). Returns
    whether it applied. Process-wide: a program using ticketlab's API may call it itself."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, KEEP_AT_MOST) == 1
