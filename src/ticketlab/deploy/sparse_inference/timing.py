"""Measuring: seconds per call, robust to interference from other processes, and per kernel of a layer."""

import math
import time

import torch

from ticketlab.deploy.sparse_inference.layers import SparseLayer


def time_calls(functions: dict, min_time: float = 0.05, rounds: int = 7, round_time: float = 0.002) -> dict:
    """Seconds per call of each function: the best of many short rounds that alternate between the functions.

    Interference from other processes only ever adds time, so the fastest round is the best estimate; rounds of
    about `round_time` (shorter than a scheduler time slice) make it likely that some round ran undisturbed.
    At least `rounds` rounds, more while they fit in `min_time`."""
    single, calls = {}, {}
    for name, f in functions.items():  # warm-up (numba compiles on first use) and calibration
        f()
        start = time.perf_counter()
        f()
        single[name] = max(time.perf_counter() - start, 1e-7)
        calls[name] = max(1, int(round_time / single[name]))
    per_round = sum(calls[n] * single[n] for n in functions)
    rounds = max(rounds, min(int(min_time / per_round), 10_000))
    best = dict.fromkeys(functions, math.inf)
    for _ in range(rounds):
        for name, f in functions.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                f()
            best[name] = min(best[name], (time.perf_counter() - start) / calls[name])
    return best


@torch.no_grad()
def time_kernels(layer: SparseLayer, x: torch.Tensor, kernels, min_time: float = 0.05) -> dict[str, float]:
    """Seconds per call of `layer` on `x` with each kernel."""
    plan = layer.plan

    def run(kernel):
        def call():
            layer.plan = {x.shape[0]: kernel}
            layer(x)
        return call

    try:
        return time_calls({k: run(k) for k in kernels}, min_time)
    finally:
        layer.plan = plan
