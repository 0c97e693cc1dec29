"""K tickets trained as one batched model against the same K trained one after another, and the matmul GFLOP/s
both achieve against this machine's dense GEMM."""

import tempfile
from pathlib import Path

from .workloads import BATCH, timed


def batching_tickets(k: int, splits, cfg, root: Path) -> list:
    """k LeNet-300-100 tickets with their own init, data order and layer-wise magnitude masks (kept 20%, 16%, ...)."""
    from ..batching import Ticket
    from ..masks import Masks
    from ..models import build_model
    from ..pruning import PruneSpec, prune
    from ..schedule import make_plan

    tickets = []
    for i in range(k):
        model = build_model("lenet300", num_classes=10, seed=i)
        masks = prune(model, Masks.ones(model), PruneSpec(rate=1 - 0.2 * 0.8 ** (i % 4)))
        tickets.append(Ticket(model, masks, splits, make_plan(cfg, len(splits.train), BATCH, data_seed=i),
                              root / f"ticket{i}"))
    return tickets


def batching_times(k: int = 8, steps: int = 300, repeats: int = 5, progress: bool = False) -> dict:
    """{"sequential": [(wall, cpu)] * repeats, "batched": [...]}: k tickets trained one after another by `train`
    (the engine's per-ticket loop) and as one batched model, alternating so machine noise hits both alike. Both write
    their stage files and evaluate at the start and the end."""
    import copy

    from tqdm import tqdm

    from ..batching import train_batched
    from ..config import TrainConfig
    from ..data import load_dataset
    from ..training import train

    splits = load_dataset("mnist-mini")
    cfg = TrainConfig(steps=f"{steps}it", optimizer="adam", lr=1.2e-3, eval_every=f"{steps}it",
                      checkpoint_every=f"{10 * steps}it")
    runs = {
        "sequential": lambda ts: [train(t.model, t.masks, t.splits, cfg, copy.copy(t.plan), t.stage) for t in ts],
        "batched": lambda ts: train_batched(ts, cfg),
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


def train_flops_per_step(batch: int = BATCH) -> int:
    """LeNet-300-100's matmul FLOPs in one training step: forward, weight gradients, and input gradients past the
    first layer (elementwise work not counted)."""
    macs = sum(i * o for i, o in LENET300_LAYERS)
    return 2 * batch * (2 * macs + sum(i * o for i, o in LENET300_LAYERS[1:]))


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


def step_floor(k: int = 8, kept: float = 0.15, repeats: int = 50) -> dict:
    """Seconds of the parts of one K-copy LeNet-300-100 step that a batched trainer with dense matmuls cannot skip,
    each timed alone at its best (hot caches: optimistic): the step's matmuls as batched `bmm` (forward, weight
    gradients, input gradients past the first layer), and one fused Adam step over the K copies' weights, whole
    ("adam_all") or over a `kept` fraction of them only ("adam_kept", as KeptOptimizer steps them), plus the
    gathers of those kept gradients and scatters of their weights that stepping them alone needs ("gather_scatter",
    KeptOptimizer's compiled loops)."""
    import torch

    from ..optimizers import index_kernels

    g = torch.Generator().manual_seed(0)
    shapes = [(k, o, i) for i, o in LENET300_LAYERS]
    weights = [torch.randn(s, generator=g) for s in shapes]
    inputs = [torch.randn(k, BATCH, i, generator=g) for _, _, i in shapes]
    grads = [torch.randn(k, BATCH, o, generator=g) for _, o, _ in shapes]

    def matmuls():
        for n, (w, x, dy) in enumerate(zip(weights, inputs, grads, strict=True)):
            torch.bmm(x, w.mT)
            torch.bmm(dy.mT, x)
            if n:
                torch.bmm(dy, w)

    def adam(fraction: float):
        params = [torch.zeros(max(16, int(fraction * w[0].numel())), requires_grad=True) for w in weights
                  for _ in range(k)]  # a tensor per copy, as the trainer's optimizer holds them
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        return torch.optim.Adam(params, fused=True).step

    gather, scatter = index_kernels()
    dense = [w.reshape(k, -1).numpy() for w in weights]
    index = [torch.randperm(d.shape[1], generator=g)[: int(kept * d.shape[1])].sort().values.to(torch.int32).numpy()
             for d in dense]
    compact = [torch.zeros(len(i)).numpy() for i in index]

    def gather_scatter():
        for d, i, c in zip(dense, index, compact, strict=True):
            for copy in d:
                gather(copy, i, c)
                scatter(c, i, copy)

    return {"matmuls": _best_time(matmuls, repeats), "adam_all": _best_time(adam(1.0), repeats),
            "adam_kept": _best_time(adam(kept), repeats), "gather_scatter": _best_time(gather_scatter, repeats)}


def format_batching(times: dict, k: int, steps: int, peak_gflops: float | None = None,
                    floor: dict | None = None) -> str:
    """The table; with `peak_gflops` (sgemm_gflops) also the achieved GFLOP/s of both sides as a fraction of it, with
    `floor` (step_floor) the ceiling those parts put on the ratio."""
    import statistics

    import torch

    seq, bat = times["sequential"], times["batched"]
    lines = [f"ticket batching: {k} LeNet-300-100 tickets x {steps} steps, batch {BATCH}, Adam, {len(seq)} repeats "
             f"alternating, {torch.get_num_threads()} threads; target: batched >= 3.5x the throughput of sequential",
             f"{'':<22} {'median s':>9} {'best s':>8} {'ticket-steps/s':>15}"]
    for name, runs in (("sequential (k x train)", seq), ("batched", bat)):
        median = statistics.median(w for w, _ in runs)
        lines.append(f"{name:<22} {median:9.2f} {min(w for w, _ in runs):8.2f} {k * steps / median:15.0f}")
    ratios = [s / b for (s, _), (b, _) in zip(seq, bat, strict=True)]
    lines.append(f"batched / sequential: {statistics.median(ratios):.2f}x (median of the repeats' ratios; "
                 f"range {min(ratios):.2f}-{max(ratios):.2f}x)")
    if torch.get_num_threads() == 1:  # one thread: CPU time is what the work costs, whatever else the machine runs
        cpu = [s / b for (_, s), (_, b) in zip(seq, bat, strict=True)]
        lines.append(f"per CPU second: {statistics.median(cpu):.2f}x")
    if peak_gflops:
        flops = train_flops_per_step() * k * steps
        rates = {name: flops / statistics.median(w for w, _ in runs) / 1e9 for name, runs in (("batched", bat),
                                                                                              ("sequential", seq))}
        lines.append(f"dense sgemm 2048^3: {peak_gflops:.1f} GFLOP/s; matmul GFLOP/s achieved in training: "
                     + ", ".join(f"{n} {r:.1f} = {100 * r / peak_gflops:.0f}%" for n, r in rates.items()))
    if floor:
        sequential_step = statistics.median(w for w, _ in seq) / steps  # all k tickets' step, in sequence
        ms = {name: 1e3 * t for name, t in floor.items()}
        kept_only = floor["matmuls"] + floor["adam_kept"] + floor["gather_scatter"]
        lines.append(f"a batched step's floor, its parts timed alone: matmuls {ms['matmuls']:.2f} ms + fused Adam "
                     f"{ms['adam_all']:.2f} ms over all weights, against {1e3 * sequential_step:.2f} ms for the {k} "
                     f"sequential steps: ceiling {sequential_step / (floor['matmuls'] + floor['adam_all']):.2f}x "
                     f"with every other part free; stepping 15% kept weights only instead (Adam "
                     f"{ms['adam_kept']:.2f} ms + gathers and scatters {ms['gather_scatter']:.2f} ms): ceiling "
                     f"{sequential_step / kept_only:.2f}x")
    return "\n".join(lines)


def batching_report(quick: bool = False, progress: bool = False) -> str:
    steps, repeats = (100, 3) if quick else (300, 5)
    return format_batching(batching_times(8, steps, repeats, progress), 8, steps, sgemm_gflops(), step_floor(8))
