"""Measuring: seconds per call, robust to interference from other processes, and per kernel of a layer."""

import time

import torch

from ticketlab.deploy.sparse_inference.kernels import DIRECT, warm_numba
from ticketlab.deploy.sparse_inference.layers import SparseLayer


def time_calls(functions: dict, min_time: float = 0.05, rounds: int = 7, round_time: float = 0.002,
               max_time: float | None = None) -> dict:
    """Seconds per call of each function: the best of many short rounds that alternate between the functions.

    Interference from other processes only ever adds time, so the fastest round is the best estimate; rounds of
    about `round_time` (shorter than a scheduler time slice) make it likely that some round ran undisturbed.
    At least `rounds` rounds, more while they fit in `min_time`; but when `rounds` rounds of one call each would
    take more than `max_time` (default 4 x `min_time`), only the rounds that fit in it after the first calls, maybe
    none: each function's first call is a sample too (a 100M-weight layer's dense product takes 40 ms; seven rounds
    of each of its kernels took 8 s). The first call includes any compilation, so compile numba functions before
    timing them."""
    max_time = 4 * min_time if max_time is None else max_time
    best, calls = {}, {}
    short = max(round_time, max_time / (rounds * len(functions)))
    started = time.perf_counter()
    for name, f in functions.items():  # the first call, then (unless it was long) a warm one for calibration
        best[name] = _seconds(f)
        if best[name] < short:
            best[name] = min(best[name], _seconds(f))
        calls[name] = max(1, int(round_time / max(best[name], 1e-7)))
    per_round = sum(calls[n] * best[n] for n in functions)
    if per_round * rounds > max_time:
        rounds = int(max(0.0, max_time - (time.perf_counter() - started)) / per_round)
    else:
        rounds = max(rounds, min(int(min_time / per_round), 10_000))
    for _ in range(rounds):
        for name, f in functions.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                f()
            best[name] = min(best[name], (time.perf_counter() - start) / calls[name])
    return best


def _seconds(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


@torch.no_grad()
def time_kernels(layer: SparseLayer, x: torch.Tensor, kernels, min_time: float = 0.05) -> dict[str, float]:
    """Seconds per call of `layer` on `x` with each kernel."""
    plan = layer.plan

    def run(kernel):
        def call():
            layer.plan = {x.shape[0]: kernel}
            layer(x)
        return call

    for kernel in kernels:  # compiled (or laid out) before timing: time_calls counts each first call
        if kernel.startswith("numba"):
            warm_numba(kernel)
        if kernel == DIRECT:
            layer.direct()[0].layout(*x.shape[-2:])
    try:
        return time_calls({k: run(k) for k in kernels}, min_time)
    finally:
        layer.plan = plan
