"""`ticketlab bench [--quick] [--only SECTION] [--threads N]`: speed and size ratios on this machine (issue 6).

Everything is measured in the same process and printed as ratios, with the thread count:
  inference  sparse vs dense inference time (ticketlab.sparse_inference.sparsify) at several densities, batch 1 and
             64, for LeNet-300-100 and VGG-16's fc layers (fc6 25088x4096, fc7 4096x4096, fc8 4096x1000, built
             alone, not the whole VGG); per layer also our numba kernel against torch's CSR kernel.
  export     compact checkpoint size (ticketlab.export) vs the dense checkpoint and vs the floor.
  batching   K=8 LeNet-300-100 tickets trained as one batched model (ticketlab.batching.train_batched) against the
             same 8 trained one after another by ticketlab.training.train (batch 60, Adam, bundled MNIST subset).
  training   masked training (a 20%-kept mask) against dense training of LeNet-300-100, both through `train`.
Masks are layer-wise magnitude masks of seeded random weights (the speed and size do not depend on the values).
The benchmarks/ scripts call the same functions with the full settings.
"""

import math
import tempfile
from collections import OrderedDict
from pathlib import Path

from ..cli import quiet_default

DENSITIES = (0.5, 0.2, 0.1, 0.05, 0.02)
QUICK_DENSITIES = (0.1, 0.02)
BATCHES = (1, 64)
SECTIONS = ("inference", "export", "batching", "training")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure sparse inference, compact checkpoints, ticket batching and masked training here",
        description="Time sparse against dense inference (LeNet-300-100, VGG-16 fc layers) at 50/20/10/5/2% of "
                    "weights kept, batch 1 and 64; measure compact checkpoint sizes; time 8 tickets trained batched "
                    "against one after another, and masked against dense training. Prints ratios measured in this "
                    "run, with the targets of issue 6. --quick: 10% and 2% only, LeNet-300-100 and fc7 only, "
                    "shorter timings and fewer repeats.")
    parser.add_argument("--quick", action="store_true", help="a subset that runs in about 20 seconds")
    parser.add_argument("--quiet", action="store_true", default=quiet_default(), help="no progress bar")
    parser.add_argument("--only", choices=SECTIONS, default=None, help="run one section only")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch (and numba) threads (default: torch's default, the number of cores)")
    parser.set_defaults(run=run)


def run(args) -> int:
    import torch

    from ..errors import TicketlabError

    if args.threads is not None:
        if args.threads < 1:
            raise TicketlabError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.only in (None, "inference"):
        print(inference_report(quick=args.quick, progress=not args.quiet))
    if args.only in (None, "export"):
        print(export_report(quick=args.quick))
    if args.only in (None, "batching"):
        print(batching_report(quick=args.quick, progress=not args.quiet))
    if args.only in (None, "training"):
        print(training_report(quick=args.quick))
    return 0


# -- models ---------------------------------------------------------------------------------------------------
def lenet300():
    from ..models import build_model

    return build_model("lenet300", seed=0).eval()


def vgg16_fc(layers=("fc6", "fc7", "fc8")):
    """VGG-16's classifier layers alone (ReLU between them), seeded random weights."""
    import torch
    from torch import nn

    shapes = {"fc6": (4096, 25088), "fc7": (4096, 4096), "fc8": (1000, 4096)}
    generator = torch.Generator().manual_seed(0)
    modules = []
    for i, name in enumerate(layers):
        out_f, in_f = shapes[name]
        linear = nn.utils.skip_init(nn.Linear, in_f, out_f)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(out_f, in_f, generator=generator) / math.sqrt(in_f))
            linear.bias.copy_(torch.randn(out_f, generator=generator) * 0.01)
        modules.append((name, linear))
        if i < len(layers) - 1:
            modules.append((f"relu_{name}", nn.ReLU()))
    model = nn.Sequential(OrderedDict(modules)).eval()
    model.input_shape = (shapes[layers[0]][1],)
    return model


def layerwise_masks(model, density: float):
    from ..masks import Masks
    from ..pruning import PruneSpec, prune

    return prune(model, Masks.ones(model), PruneSpec(criterion="magnitude", scope="layer", rate=1 - density))


# -- timing ---------------------------------------------------------------------------------------------------
def inference_rows(models: dict, densities=DENSITIES, batches=BATCHES, min_time: float = 0.2, progress=False):
    """(model rows, layer rows): whole-model dense vs sparsified time, and each layer's kernel timings."""
    import torch
    from tqdm import tqdm

    from ..sparse_inference import FusedChain, available_kernels, layer_choices, sparsify, time_calls

    model_rows, layer_rows = [], []
    generator = torch.Generator().manual_seed(0)
    bar = tqdm(total=len(models) * len(densities), desc="sparse inference", disable=not progress, leave=False)
    for model_name, build in models.items():
        dense = build()
        for density in densities:
            bar.set_postfix_str(f"{model_name} kept {100 * density:g}%")
            masks = layerwise_masks(dense, density)
            masks.apply(dense)
            fast = sparsify(dense, masks, batch_sizes=batches, min_time=min_time / 4)
            choices = {(c.name, c.batch): c.kernel for c in layer_choices(fast)}
            fused = [f"{m.names[0]}..{m.names[-1]}" for m in fast.modules() if isinstance(m, FusedChain) and m.enabled]
            for batch in batches:
                x = torch.randn(batch, *dense.input_shape, generator=generator)
                with torch.no_grad():
                    t = time_calls({"dense": lambda x=x, m=dense: m(x), "sparse": lambda x=x, m=fast: m(x)},
                                         min_time)
                kernels = ", ".join(f"{n} {k}" for (n, b), k in choices.items() if b == batch)
                if batch == 1 and fused:
                    kernels = f"fused chain {', '.join(fused)} (per layer when not fused: {kernels})"
                model_rows.append({"model": model_name, "density": density, "batch": batch, "dense": t["dense"],
                                   "sparse": t["sparse"], "kernels": kernels})
            for c in layer_choices(fast):
                layer_rows.append({"model": model_name, "layer": c.name, "density": density, "batch": c.batch,
                                   **{k: c.timings.get(k, math.nan) for k in available_kernels()},
                                   "chosen": c.kernel})
            dense = build()  # fresh weights for the next density (masks shrink from the dense net)
            bar.update()
    bar.close()
    return model_rows, layer_rows


def format_inference(model_rows, layer_rows) -> str:
    import torch

    from ..masks import describe_density

    lines = [f"sparse inference vs dense, {torch.get_num_threads()} threads, time per batch (best of many short "
             "interleaved rounds); speedup = dense / sparse (>1: sparse faster)",
             f"{'model':<10} {'kept':<28} {'batch':>5} {'dense ms':>9} {'sparse ms':>9} {'speedup':>8}  kernels"]
    for r in model_rows:
        lines.append(f"{r['model']:<10} {describe_density(r['density']):<28} {r['batch']:>5} "
                     f"{1e3 * r['dense']:9.3f} {1e3 * r['sparse']:9.3f} {r['dense'] / r['sparse']:7.2f}x  "
                     f"{r['kernels']}")
    if layer_rows:
        lines += ["", "per layer: each kernel's speedup over dense; ours/torch = torch-csr time / best numba time",
                  f"{'layer':<14} {'kept':>6} {'batch':>5} {'dense us':>9} {'torch-csr':>9} {'numba':>8} "
                  f"{'numba-par':>9} {'ours/torch':>10}  chosen"]
        for r in layer_rows:
            ours = min((r[k] for k in ("numba", "numba-parallel") if not math.isnan(r.get(k, math.nan))),
                       default=math.nan)
            lines.append(f"{r['model'] + '.' + r['layer']:<14} {100 * r['density']:5.1f}% {r['batch']:>5} "
                         f"{1e6 * r['dense']:9.1f} {_ratio(r['dense'], r['torch-csr']):>9} "
                         f"{_ratio(r['dense'], r.get('numba', math.nan)):>8} "
                         f"{_ratio(r['dense'], r.get('numba-parallel', math.nan)):>9} "
                         f"{_ratio(r['torch-csr'], ours):>10}  {r['chosen']}")
    return "\n".join(lines)


def _ratio(a: float, b: float) -> str:
    """'2.41x', or '-' for a kernel that was not measured (numba missing; numba-parallel on one thread)."""
    return "-" if math.isnan(b) else f"{a / b:.2f}x"


def inference_report(quick: bool = False, progress: bool = False) -> str:
    if quick:
        models = {"lenet300": lenet300, "vgg-fc7": lambda: vgg16_fc(("fc7",))}
        rows = inference_rows(models, QUICK_DENSITIES, BATCHES, min_time=0.05, progress=progress)
    else:
        rows = inference_rows({"lenet300": lenet300, "vgg16-fc": vgg16_fc}, DENSITIES, BATCHES, progress=progress)
    return format_inference(*rows)


# -- export size ----------------------------------------------------------------------------------------------
def export_rows(models: dict, densities=DENSITIES, formats=("auto", "bitmask", "csr")) -> list[dict]:
    from ..export import export_compact

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, build in models.items():
            model = build()
            for density in densities:
                masks = layerwise_masks(model, density)
                state = {k: v * masks[k] if k in masks else v for k, v in model.state_dict().items()}
                for fmt in formats:
                    report = export_compact(state, masks, Path(tmp) / "x.safetensors", fmt)
                    rows.append({"model": model_name, "density": density, "format": fmt, "bytes": report.bytes,
                                 "vs_dense": report.vs_dense, "vs_floor": report.vs_floor})
    return rows


def format_export(rows) -> str:
    from ..masks import describe_density

    lines = ["compact checkpoint size: vs dense = bytes / dense safetensors; vs floor = bytes / (kept x 4 B + "
             "1 bit per pruned-tensor weight + dense tensors); target <= 1.15x the floor",
             f"{'model':<10} {'kept':<28} {'format':<8} {'bytes':>11} {'vs dense':>9} {'vs floor':>9}"]
    for r in rows:
        lines.append(f"{r['model']:<10} {describe_density(r['density']):<28} {r['format']:<8} {r['bytes']:>11,} "
                     f"{r['vs_dense']:8.3f}x {r['vs_floor']:8.3f}x")
    return "\n".join(lines)


def export_report(quick: bool = False) -> str:
    from ..models import build_model

    models = {"lenet300": lenet300}
    if not quick:
        models["conv4"] = lambda: build_model("conv4", seed=0)
    return format_export(export_rows(models, QUICK_DENSITIES if quick else DENSITIES))


# -- ticket batching ------------------------------------------------------------------------------------------
BATCH = 60  # LeNet-300-100's batch size (Frankle & Carbin)


def batching_tickets(k: int, splits, cfg, root: Path) -> list:
    """k LeNet-300-100 tickets with their own init, data order and layer-wise magnitude masks (kept 20%, 16%, ...)."""
    from ..batching import Ticket
    from ..masks import Masks
    from ..models import build_model
    from ..pruning import PruneSpec, prune
    from ..training import make_plan

    tickets = []
    for i in range(k):
        model = build_model("lenet300", num_classes=10, seed=i)
        masks = prune(model, Masks.ones(model), PruneSpec(rate=1 - 0.2 * 0.8 ** (i % 4)))
        tickets.append(Ticket(model, masks, splits, make_plan(cfg, len(splits.train), BATCH, data_seed=i),
                              root / f"ticket{i}"))
    return tickets


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn()."""
    import time

    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


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
                times[name].append(_timed(lambda run=run, tickets=tickets: run(tickets)))
    return times


LENET300_LAYERS = ((784, 300), (300, 100), (100, 10))


def train_flops_per_step(batch: int = BATCH) -> int:
    """LeNet-300-100's matmul FLOPs in one training step: forward, weight gradients, and input gradients past the
    first layer (elementwise work not counted)."""
    macs = sum(i * o for i, o in LENET300_LAYERS)
    return 2 * batch * (2 * macs + sum(i * o for i, o in LENET300_LAYERS[1:]))


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` throughput of one n x n x n fp32 matmul: this machine's dense GEMM ceiling."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        best = min(best, (time.perf_counter() - start) / 3)
    return 2 * n**3 / best / 1e9


def format_batching(times: dict, k: int, steps: int, peak_gflops: float | None = None) -> str:
    """The table; with `peak_gflops` (sgemm_gflops) also the achieved GFLOP/s of both sides as a fraction of it."""
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
    return "\n".join(lines)


def batching_report(quick: bool = False, progress: bool = False) -> str:
    steps, repeats = (100, 3) if quick else (300, 5)
    return format_batching(batching_times(8, steps, repeats, progress), 8, steps, sgemm_gflops())


# -- masked training ------------------------------------------------------------------------------------------
TRAINING_VARIANTS = ("dense", "masked", "torch-prune")


def masked_training_times(steps: int = 600, repeats: int = 5) -> dict:
    """{variant: [(steps per wall second, per CPU second)] * repeats}: LeNet-300-100 trained by `train` without masks
    ("dense"), under a 20%-kept mask ("masked"), and with the same mask attached by `torch.nn.utils.prune` instead
    ("torch-prune": weight = weight_orig * weight_mask recomputed in every forward pass), alternating."""
    from ..config import TrainConfig
    from ..data import load_dataset
    from ..masks import Masks
    from ..models import build_model
    from ..pruning import PruneSpec, prune
    from ..torch_prune import to_torch_prune
    from ..training import make_plan, train

    splits = load_dataset("mnist-mini")
    cfg = TrainConfig(steps=f"{steps}it", eval_every=f"{steps}it", checkpoint_every=f"{10 * steps}it")

    def rate(name: str) -> tuple[float, float]:
        model = build_model("lenet300", num_classes=10, seed=0)
        masks = Masks({}) if name == "dense" else prune(model, Masks.ones(model), PruneSpec(rate=0.8))
        if name == "torch-prune":  # the mask lives in the model: `train` sees plain parameters
            model, masks = to_torch_prune(model, masks), Masks({})
        plan = make_plan(cfg, len(splits.train), BATCH, data_seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = _timed(lambda: train(model, masks, splits, cfg, plan, Path(tmp)))
        return plan.total / wall, plan.total / cpu

    rate("dense")  # warm-up
    times = {name: [] for name in TRAINING_VARIANTS}
    for _ in range(repeats):
        for name in TRAINING_VARIANTS:
            times[name].append(rate(name))
    return times


def format_masked_training(times: dict, steps: int) -> str:
    import statistics

    import torch

    def overheads(name: str, per: int = 0) -> list[float]:  # per 0: wall time, 1: CPU time
        return [100 * (d[per] / m[per] - 1) for d, m in zip(times["dense"], times[name], strict=True)]

    lines = [f"masked training: LeNet-300-100, batch {BATCH}, {steps} steps x {len(times['dense'])} repeats "
             f"alternating, {torch.get_num_threads()} threads; target: masked overhead <= 5%"]
    for name in TRAINING_VARIANTS:
        lines.append(f"{name:<12} {statistics.median(r for r, _ in times[name]):8.0f} steps/s (median)")
    for name in TRAINING_VARIANTS[1:]:
        o = overheads(name)
        lines.append(f"{name} overhead over dense: {statistics.median(o):+.1f}% (median of the repeats; range "
                     f"{min(o):+.1f}% to {max(o):+.1f}%)" +
                     (f"; per CPU second {statistics.median(overheads(name, 1)):+.1f}%"
                      if torch.get_num_threads() == 1 else ""))
    speedup = [m / t for (m, _), (t, _) in zip(times["masked"], times["torch-prune"], strict=True)]
    lines.append(f"masked / torch-prune throughput: {statistics.median(speedup):.2f}x")
    return "\n".join(lines)


def training_report(quick: bool = False) -> str:
    steps, repeats = (300, 3) if quick else (600, 5)
    return format_masked_training(masked_training_times(steps, repeats), steps)
