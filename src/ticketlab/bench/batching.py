"""K tickets trained as one batched model against the same K trained one after another, and the GFLOP/s each
achieves against this machine's dense GEMM. The batched trainer runs twice: as the engine runs it (layers keeping
little train sparse: batching/sparse_linear.py, batching/sparse_conv.py) and with dense layers only, which shows what
batching alone buys. Workloads (LeNet-300-100, Conv-6, ResNet-20 with their papers' recipes): batching_workloads.py."""

import tempfile
from pathlib import Path

from ticketlab.bench.batching_workloads import WORKLOADS, batching_data, batching_tickets, pruned_copies
from ticketlab.bench.workloads import timed

TARGETS = {"lenet300": 3.5, "conv6": 3.0, "resnet20": 2.0}  # batched / sequential throughput (the targets)


def batching_times(k: int = 8, steps: int = 300, repeats: int = 5, progress: bool = False,
                   model: str = "lenet300", level: int | None = None) -> dict:
    """{"sequential": [(wall, cpu)] * repeats, "batched": [...], "batched-dense": [...]}: k tickets of the workload
    `model` (at IMP `level`, default: the workload's) trained one after another by `train` (the engine's per-ticket
    loop, with the accelerator `ticketlab run` uses: the masked Adam kernel) and as one batched model (sparse kernels as
    the engine uses them, and dense layers only), alternating so machine noise hits all alike. All write their stage
    files and evaluate at the start and the end."""
    import copy

    from tqdm import tqdm

    from ticketlab.accel import select
    from ticketlab.accel.batching import train_batched
    from ticketlab.engine.config import TrainConfig
    from ticketlab.engine.training import train

    workload = WORKLOADS[model]
    splits = batching_data(workload, train_size=workload.batch * 20)
    cfg = TrainConfig(steps=f"{steps}it", eval_every=f"{steps}it", checkpoint_every=f"{10 * steps}it",
                      **workload.train)
    runs = {
        "sequential": lambda ts: [train(t.model, t.masks, t.splits, cfg, copy.copy(t.plan), t.stage,
                                        accelerator=select()) for t in ts],
        "batched": lambda ts: train_batched(ts, cfg),
        "batched-dense": lambda ts: train_batched(ts, cfg, sparse=False),
    }
    times = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in runs.items():  # warm-up: first calls allocate, kernels load
            run(batching_tickets(workload, 2, splits, cfg, Path(tmp) / f"warm-{name}", level))
        for r in tqdm(range(repeats), desc="ticket batching", disable=not progress, leave=False):
            for name, run in runs.items():
                tickets = batching_tickets(workload, k, splits, cfg, Path(tmp) / f"{name}{r}", level)
                times[name].append(timed(lambda run=run, tickets=tickets: run(tickets)))
    return times


def train_flops_per_step(model: str, k: int, sparse: bool, level: int | None = None) -> float:
    """The k tickets' multiply-add FLOPs in one training step: forward, weight gradients, and input gradients past the
    first layer (elementwise work not counted); `sparse`: of their kept weights only, as sparse layers compute."""
    from ticketlab.core.counting import count

    workload, total = WORKLOADS[model], 0.0
    for net, masks in pruned_copies(workload, k, level):
        rows = [r for r in count(net, masks).layers if r.macs_counted]
        macs = [r.macs_weight_sparse if sparse else r.macs_dense for r in rows]
        total += 3 * sum(macs) - macs[0]
    return 2 * workload.batch * total


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


def format_batching(times: dict, k: int, steps: int, peak_gflops: float | None = None, busy: bool = False,
                    model: str = "lenet300", level: int | None = None) -> str:
    """The table: medians, ranges and noise of the alternating repeats, the verdict on the workload's target only
    when the noise allows it; with `peak_gflops` (sgemm_gflops) also the GFLOP/s each side achieves, as a fraction
    of it (sparse training counted by the multiply-adds of kept weights it does)."""
    import statistics

    import torch

    from ticketlab.bench.noise import paired_ratio, spread, verdict

    workload, target = WORKLOADS[model], TARGETS[model]
    seq = [w for w, _ in times["sequential"]]
    lines = [f"ticket batching: {k} {workload.label} tickets x {steps} steps, batch {workload.batch}, "
             f"{workload.train['optimizer']}, {len(seq)} repeats alternating, {torch.get_num_threads()} threads; "
             f"{workload.kept(level)}; target: batched >= {target}x the throughput of sequential"]
    for name, label in NAMES.items():
        walls = [w for w, _ in times[name]]
        ratio = "" if name == "sequential" else f"; vs sequential {paired_ratio(seq, walls)}"
        lines.append(f"{label:<30} {spread(walls)}, {k * steps / statistics.median(walls):.1f} ticket-steps/s{ratio}")
    lines.append("vs sequential: the median of the repeats' ratios (their range; noise: the larger coefficient of "
                 "variation of the two sides' repeats)")
    lines.append(f"target batched >= {target}x: "
                 f"{verdict(paired_ratio(seq, [w for w, _ in times['batched']]), target, busy=busy)}")
    if torch.get_num_threads() == 1:  # one thread: CPU time is what the work costs, whatever else the machine runs
        cpu = paired_ratio([c for _, c in times["sequential"]], [c for _, c in times["batched"]])
        lines.append(f"batched per CPU second: {cpu}")
    if peak_gflops:
        dense, sparse = (train_flops_per_step(model, k, sparse, level) for sparse in (False, True))
        flops = {"sequential": dense, "batched": sparse, "batched-dense": dense}
        rates = {name: flops[name] * steps / statistics.median(w for w, _ in times[name]) / 1e9 for name in NAMES}
        lines.append(f"dense sgemm: {peak_gflops:.1f} GFLOP/s; GFLOP/s achieved in training (sparse: kept weights' "
                     f"only): " + ", ".join(f"{n} {r:.1f} = {100 * r / peak_gflops:.0f}%" for n, r in rates.items()))
    return "\n".join(lines)


NAMES = {"sequential": "sequential (k x train)", "batched": "batched (sparse kernels)",
         "batched-dense": "batched, dense layers only"}


def batching_report(quick: bool = False, progress: bool = False, smoke: bool = False, model: str = "lenet300") -> str:
    """The section, with the machine load seen while it was measured. quick: fewer repeats of the same measurement
    (a stage's fixed costs, its set-up and evaluations, weigh more in shorter runs, so fewer steps would move the ratio
    away from the one the target is set for); smoke: 2 tickets x 5 steps (conv models: 2), 2 repeats."""
    from ticketlab.bench.noise import load_mark, load_since

    k, steps, repeats = (2, 5, 2) if smoke else (8, 300, 3) if quick else (8, 300, 5)
    if model != "lenet300":  # a Conv-6 or ResNet-20 step costs ~50-100x a LeNet-300-100 step
        steps = 2 if smoke else steps // 10
    before = load_mark()
    times = batching_times(k, steps, repeats, progress, model)
    peak = sgemm_gflops(256 if smoke else 2048)
    load = load_since(before)
    return f"{format_batching(times, k, steps, peak, busy=load.busy, model=model)}\n{load}"
