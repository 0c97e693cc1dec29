"""K tickets trained as one batched model against the same K trained one after another, and the matmul GFLOP/s
each achieves against this machine's dense GEMM. The batched trainer runs twice: as the engine runs it (its Linear
layers keep <= 40%, so they train sparse: batching/sparse_linear.py) and with dense batched matmuls only, which
shows what batching alone buys."""

import tempfile
from pathlib import Path

from ticketlab.bench.workloads import BATCH, timed


def batching_tickets(k: int, splits, cfg, root: Path) -> list:
    """k LeNet-300-100 tickets with their own init, data order and layer-wise magnitude masks (kept 20%, 16%, ...)."""
    from ticketlab.accel.batching import Ticket
    from ticketlab.core.masks import Masks
    from ticketlab.core.pruning import PruneSpec, prune
    from ticketlab.engine.schedule import make_plan
    from ticketlab.models import build_model

    tickets = []
    for i in range(k):
        model = build_model("lenet300", num_classes=10, seed=i)
        masks = prune(model, Masks.ones(model), PruneSpec(rate=1 - ticket_kept(i)))
        tickets.append(Ticket(model, masks, splits, make_plan(cfg, len(splits.train), BATCH, data_seed=i),
                              root / f"ticket{i}"))
    return tickets


def batching_times(k: int = 8, steps: int = 300, repeats: int = 5, progress: bool = False) -> dict:
    """{"sequential": [(wall, cpu)] * repeats, "batched": [...], "batched-dense": [...]}: k tickets trained one after
    another by `train` (the engine's per-ticket loop) and as one batched model (sparse kernels as the engine uses
    them, and dense matmuls only), alternating so machine noise hits all alike. All write their stage files and
    evaluate at the start and the end."""
    import copy

    from tqdm import tqdm

    from ticketlab.accel.batching import train_batched
    from ticketlab.data import load_dataset
    from ticketlab.engine.config import TrainConfig
    from ticketlab.engine.training import train

    splits = load_dataset("mnist-mini")
    cfg = TrainConfig(steps=f"{steps}it", optimizer="adam", lr=1.2e-3, eval_every=f"{steps}it",
                      checkpoint_every=f"{10 * steps}it")
    runs = {
        "sequential": lambda ts: [train(t.model, t.masks, t.splits, cfg, copy.copy(t.plan), t.stage) for t in ts],
        "batched": lambda ts: train_batched(ts, cfg),
        "batched-dense": lambda ts: train_batched(ts, cfg, sparse=False),
    }
    times = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in runs.items():  # warm-up: first calls allocate, numba and MKL initialise
            run(batching_tickets(2, splits, cfg, Path(tmp) / f"warm-{name}"))
        for r in tqdm(range(repeats), desc="ticket batching", disable=not progress, leave=False):
            for name, run in runs.items():
                tickets = batching_tickets(k, splits, cfg, Path(tmp) / f"{name}{r}")
                times[name].append(timed(lambda run=run, tickets=tickets: run(tickets)))
    return times


LENET300_LAYERS = ((784, 300), (300, 100), (100, 10))


def train_flops_per_step(batch: int = BATCH, kept: float = 1.0) -> float:
    """LeNet-300-100's matmul FLOPs in one training step: forward, weight gradients, and input gradients past the
    first layer (elementwise work not counted); `kept`: of a ticket keeping that fraction of every layer's weights,
    multiplying its kept weights only (as sparse training does)."""
    macs = sum(i * o for i, o in LENET300_LAYERS)
    return kept * 2 * batch * (2 * macs + sum(i * o for i, o in LENET300_LAYERS[1:]))


def ticket_kept(i: int) -> float:
    """The fraction of every layer's weights ticket i of `batching_tickets` keeps: 20%, 16%, 12.8%, 10.2%, 20%..."""
    return 0.2 * 0.8 ** (i % 4)


def mean_kept(k: int) -> float:
    """The mean kept fraction of the k tickets `batching_tickets` builds."""
    return sum(ticket_kept(i) for i in range(k)) / k


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` throughput of one n x n x n fp32 matmul: this machine's dense GEMM ceiling."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / _best_time(lambda: a @ b, repeats) / 1e9


def _best_time(fn, repeats: int) -> float:
    """The fastest of `repeats` timed calls of fn, after one untimed (warm-up) call."""
    import time

    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def format_batching(times: dict, k: int, steps: int, peak_gflops: float | None = None, busy: bool = False) -> str:
    """The table: medians, ranges and noise of the alternating repeats, the verdict on the 3.5x target only when
    the noise allows it; with `peak_gflops` (sgemm_gflops) also the matmul GFLOP/s each side achieves, as a fraction
    of it (sparse training counted by the multiply-adds of kept weights it does)."""
    import statistics

    import torch

    from ticketlab.bench.noise import paired_ratio, spread, verdict

    seq = [w for w, _ in times["sequential"]]
    lines = [f"ticket batching: {k} LeNet-300-100 tickets x {steps} steps, batch {BATCH}, Adam, {len(seq)} repeats "
             f"alternating, {torch.get_num_threads()} threads; target: batched >= 3.5x the throughput of sequential"]
    for name, label in NAMES.items():
        walls = [w for w, _ in times[name]]
        ratio = "" if name == "sequential" else f"; vs sequential {paired_ratio(seq, walls)}"
        lines.append(f"{label:<30} {spread(walls)}, {k * steps / statistics.median(walls):.0f} ticket-steps/s{ratio}")
    lines.append("vs sequential: the median of the repeats' ratios (their range; noise: the larger coefficient of "
                 "variation of the two sides' repeats)")
    lines.append(f"target batched >= 3.5x: "
                 f"{verdict(paired_ratio(seq, [w for w, _ in times['batched']]), 3.5, busy=busy)}")
    if torch.get_num_threads() == 1:  # one thread: CPU time is what the work costs, whatever else the machine runs
        cpu = paired_ratio([c for _, c in times["sequential"]], [c for _, c in times["batched"]])
        lines.append(f"batched per CPU second: {cpu}")
    if peak_gflops:
        flops = {"sequential": train_flops_per_step(), "batched": train_flops_per_step(kept=mean_kept(k)),
                 "batched-dense": train_flops_per_step()}
        rates = {name: flops[name] * k * steps / statistics.median(w for w, _ in times[name]) / 1e9 for name in NAMES}
        lines.append(f"dense sgemm: {peak_gflops:.1f} GFLOP/s; matmul GFLOP/s achieved in training (sparse: "
                     f"kept weights' only): " + ", ".join(f"{n} {r:.1f} = {100 * r / peak_gflops:.0f}%"
                                                          for n, r in rates.items()))
    return "\n".join(lines)


NAMES = {"sequential": "sequential (k x train)", "batched": "batched (sparse kernels)",
         "batched-dense": "batched, dense matmuls only"}


def batching_report(quick: bool = False, progress: bool = False, smoke: bool = False) -> str:
    """The section, with the machine load seen while it was measured. smoke: 2 tickets x 5 steps, 2 repeats."""
    from ticketlab.bench.noise import load_since, loadavg

    k, steps, repeats = (2, 5, 2) if smoke else (8, 100, 3) if quick else (8, 300, 5)
    before = loadavg()
    times = batching_times(k, steps, repeats, progress)
    peak = sgemm_gflops(256 if smoke else 2048)
    load = load_since(before)
    return f"{format_batching(times, k, steps, peak, busy=load.busy)}\n{load}"
