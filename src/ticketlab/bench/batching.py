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


def format_batching(times: dict, k: int, steps: int, peak_gflops: float | None = None) -> str:
    """The table; with `peak_gflops` (sgemm_gflops) also the matmul GFLOP/s each side achieves, as a fraction of it
    (sparse training counted by the multiply-adds of kept weights it does)."""
    import statistics

    import torch

    seq = times["sequential"]
    best_seq = min(w for w, _ in seq)
    lines = [f"ticket batching: {k} LeNet-300-100 tickets x {steps} steps, batch {BATCH}, Adam, {len(seq)} repeats "
             f"alternating, {torch.get_num_threads()} threads; target: batched >= 3.5x the throughput of sequential",
             f"{'':<30} {'median s':>9} {'best s':>8} {'ticket-steps/s':>15} {'vs sequential':>20} "
             f"{'best vs best':>13}"]
    for name, label in NAMES.items():
        runs = times[name]
        median, best = statistics.median(w for w, _ in runs), min(w for w, _ in runs)
        ratios = [s / b for (s, _), (b, _) in zip(seq, runs, strict=True)]
        ratio = "" if name == "sequential" else (f"{statistics.median(ratios):.2f}x "
                                                 f"({min(ratios):.2f}-{max(ratios):.2f})")
        versus_best = "" if name == "sequential" else f"{best_seq / best:.2f}x"
        lines.append(f"{label:<30} {median:9.2f} {best:8.2f} {k * steps / median:15.0f} {ratio:>20} "
                     f"{versus_best:>13}")
    lines.append("vs sequential: the median of the repeats' ratios (their range); best vs best: the ratio of the "
                 "fastest runs (machine noise only ever slows a run down)")
    if torch.get_num_threads() == 1:  # one thread: CPU time is what the work costs, whatever else the machine runs
        cpu = [s / b for (_, s), (_, b) in zip(seq, times["batched"], strict=True)]
        lines.append(f"batched per CPU second: {statistics.median(cpu):.2f}x")
    if peak_gflops:
        flops = {"sequential": train_flops_per_step(), "batched": train_flops_per_step(kept=mean_kept(k)),
                 "batched-dense": train_flops_per_step()}
        rates = {name: flops[name] * k * steps / statistics.median(w for w, _ in times[name]) / 1e9 for name in NAMES}
        lines.append(f"dense sgemm 2048^3: {peak_gflops:.1f} GFLOP/s; matmul GFLOP/s achieved in training (sparse: "
                     f"kept weights' only): " + ", ".join(f"{n} {r:.1f} = {100 * r / peak_gflops:.0f}%"
                                                          for n, r in rates.items()))
    return "\n".join(lines)


NAMES = {"sequential": "sequential (k x train)", "batched": "batched (sparse kernels)",
         "batched-dense": "batched, dense matmuls only"}


def batching_report(quick: bool = False, progress: bool = False) -> str:
    steps, repeats = (100, 3) if quick else (300, 5)
    return format_batching(batching_times(8, steps, repeats, progress), 8, steps, sgemm_gflops())
