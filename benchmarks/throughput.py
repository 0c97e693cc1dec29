"""Training throughput (samples/s) of the Table 2 models on this machine, masked vs dense in the same run.

Vision: LeNet-300-100 and LeNet-5 (batch 60, Adam), Conv-6 (batch 60, Adam) and ResNet-50-CIFAR (batch 128,
SGD + momentum, crop and flip augmentation) on random tensors of their input shape. Graph and language, added by
name when registered (a note says so otherwise): GCN on the Cora-sized CSBM (`gcn` + `csbm`, full batch) and tiny
BERT on the synthetic pairs task (`tiny-bert` + `pairs`, batch 32).

Both variants go through `ticketlab.engine.training.train` with the accelerator `ticketlab run` uses
(`ticketlab.accel.select`): "dense" with no masks, "masked" with a 20%-density global magnitude mask. Repeats alternate
dense and masked so machine noise hits both alike; the median of each is printed, and the masked overhead as the median
of the repeats' ratios with its range and noise (the coefficient of variation of the repeats, ticketlab.bench.noise),
with the machine load seen. Timing starts after the first step (warm-up) and ends with the stage, whose final evaluation
runs on a 2-sample validation and test split. Two rates: samples per second of wall time, and samples per second of
process CPU time. On a shared machine the second is the one to trust: run with OMP_NUM_THREADS=1 (spinning OpenMP
threads otherwise bill CPU time for waiting), and it is what one idle core does; the estimates assume two idle cores do
twice that (perfect scaling: an upper bound). `--estimate` also measures evaluation throughput (forward only, chunks of
1,000) and prints the time one run of each vision preset needs here and, estimated from its MACs, on one modern GPU (the
arithmetic is printed; docs/table2.md).

Run: nice -n 10 .venv/bin/python benchmarks/throughput.py [--only NAME ...] [--repeats N] [--estimate] [--smoke]
"""

import argparse
import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ticketlab.accel import select
from ticketlab.bench.noise import load_mark, load_since, paired_ratio
from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.data import DATASETS, InMemory, Splits, load_dataset
from ticketlab.data.augment import AUGMENTATIONS
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.lottery import model_for
from ticketlab.engine.presets import build_config, load_preset
from ticketlab.engine.rewind import rewind_for
from ticketlab.engine.schedule import make_plan
from ticketlab.engine.training import evaluate, train
from ticketlab.errors import TicketlabError
from ticketlab.models import MODELS, build_model

ADAM = {"optimizer": "adam"}
SGD = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}


@dataclass
class Entry:
    name: str  # for --only
    label: str
    model: str
    dataset: str | None  # None: random tensors of the model's input shape, 10 classes
    batch: int | None  # None: every training sample (full-batch graph training)
    steps: int  # timed steps per repeat
    train: dict = field(default_factory=dict)
    augment: str = "none"
    preset: str | None = None  # the Table 2 preset whose running time --estimate works out


ENTRIES = [
    Entry("lenet300", "LeNet-300-100 (MNIST)", "lenet300", None, 60, 200, {**ADAM, "lr": 1.2e-3},
          preset="lenet300-mnist"),
    Entry("lenet5", "LeNet-5 (MNIST)", "lenet5", None, 60, 200, {**ADAM, "lr": 1.2e-3}, preset="lenet5-mnist"),
    Entry("conv6", "Conv-6 (CIFAR-10)", "conv6", None, 60, 30, {**ADAM, "lr": 3e-4}, preset="conv6-cifar10"),
    Entry("resnet50", "ResNet-50-CIFAR", "resnet50-cifar", None, 128, 2, SGD, "cifar", preset="resnet50-cifar10"),
    Entry("gcn", "GCN, Cora-sized CSBM", "gcn", "csbm", None, 30, {**ADAM, "lr": 0.008, "weight_decay": 8e-5}),
    Entry("tiny-bert", "tiny BERT, pairs", "tiny-bert", "pairs", 32, 30, {"optimizer": "adamw", "lr": 1e-3}),
]
TINY = 2  # validation and test samples during timing


def synthetic(model: str, n: int) -> Splits:
    shape = MODELS.get(model).input_shape
    g = torch.Generator().manual_seed(0)
    part = lambda k: InMemory(torch.randn(k, *shape, generator=g), torch.randint(10, (k,), generator=g))  # noqa: E731
    return Splits(part(n), part(TINY), part(TINY), 10, tuple(shape), "random")


def setup(entry: Entry):
    """(splits, build) for an entry: `build()` gives the model freshly initialised. None when not registered."""
    missing = [] if entry.model in MODELS else [f"model {entry.model!r}"]
    if entry.dataset and entry.dataset not in DATASETS:
        missing.append(f"dataset {entry.dataset!r}")
    if missing:
        print(f"{entry.label}: skipped, {' and '.join(missing)} not registered yet")
        return None
    if entry.dataset is None:
        splits = synthetic(entry.model, 2 * entry.batch)
        return splits, lambda: build_model(entry.model, num_classes=10, seed=0)
    try:
        splits = load_dataset(entry.dataset)
    except TicketlabError as e:  # e.g. the `nlp` extra is not installed
        print(f"{entry.label}: skipped, {e}")
        return None
    keep = torch.arange(TINY)
    splits = replace(splits, val=splits.val.subset(keep), test=splits.test.subset(keep))
    cfg = build_config(None, overrides=[f"model.name={entry.model}", f"data.name={entry.dataset}"])
    return splits, lambda: model_for(cfg, splits, 0)


def samples_per_second(entry: Entry, splits: Splits, build, masked: bool) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second) of masked or dense training."""
    model = build()
    masks = prune(model, Masks.ones(model), PruneSpec(scope="global", rate=0.8)) if masked else Masks({})
    batch = entry.batch or len(splits.train)
    total = entry.steps + 1
    cfg = TrainConfig(steps=f"{total}it", eval_every=f"{total}it", checkpoint_every=f"{10 * total}it",
                      **entry.train)
    plan = make_plan(cfg, len(splits.train), batch, data_seed=0)
    marks = []
    with tempfile.TemporaryDirectory() as tmp:
        train(model, masks, splits, cfg, plan, Path(tmp), snapshot=(1, lambda m: marks.append(clocks())),
              augment=AUGMENTATIONS.get(entry.augment), accelerator=select())
        return rates(entry.steps * batch, marks[0])


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def rates(samples: int, since: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return samples / (wall - since[0]), samples / max(cpu - since[1], 1e-9)


def eval_samples_per_second(entry: Entry, build) -> tuple[float, float]:
    n = min(1000, 2 * (entry.batch or 1000))
    data = synthetic(entry.model, n).train
    model = build()
    evaluate(model, data.x[:TINY], data.y[:TINY])  # warm-up
    start = clocks()
    evaluate(model, data.x, data.y)
    return rates(n, start)


# -- time estimates for the vision presets --------------------------------------------------------------------------

SIZES = {"mnist": (55_000, 5_000, 10_000), "cifar10": (45_000, 5_000, 10_000)}  # train (after val), val, test
# One modern GPU, an estimate: NVIDIA A100 with train.precision=bf16 and channels_last. Small 32x32 (28x28) images at
# batch 60-128 keep kernels short: we assume 25 TFLOPS sustained (8% of the 312 TFLOPS bf16 peak; it reproduces the
# ~5,000 images/s commonly reported for ResNet-18 on CIFAR-10 with mixed precision on an A100), and a floor of 1.5 ms
# per training step and 1 ms per 1,000-sample evaluation chunk (kernel launches, optimizer, masks, host syncs).
GPU_FLOPS = 25e12
GPU_STEP_FLOOR, GPU_EVAL_FLOOR = 1.5e-3, 1e-3


def workload(preset: str) -> dict:
    """Training steps, evaluations and samples of one full run of `preset` (every level and baseline)."""
    cfg = load_preset(preset)
    n_train, n_val, n_test = SIZES[cfg.data.name]
    batch = cfg.data.batch_size
    plan = make_plan(cfg.train, n_train, batch, 0)
    k = rewind_for(cfg.lottery.rewind, plan.total, plan.steps_per_epoch).step or 0  # None: no weight rewinding
    trainings = [(0, plan.total)] + [(k, plan.total)] * (cfg.lottery.levels * (1 + len(cfg.lottery.baselines)))
    steps = sum(total - start for start, total in trainings)
    evals = sum(1 + (total // plan.eval_every - start // plan.eval_every) + (total % plan.eval_every != 0)
                for start, total in trainings)
    return {"trainings": len(trainings), "steps": steps, "batch": batch, "evals": evals, "eval_size": n_val + n_test}


def macs_per_sample(model: str) -> int:
    from ticketlab.core.counting import count

    return count(build_model(model, num_classes=10, seed=0)).macs_dense


def estimate(entry: Entry, train_sps: float, eval_sps: float) -> str:
    """Run time of the entry's preset on two idle cores (twice the measured per-CPU-second rates) and one GPU."""
    w = workload(entry.preset)
    cpu = w["steps"] * w["batch"] / (2 * train_sps) + w["evals"] * w["eval_size"] / (2 * eval_sps)
    macs = macs_per_sample(entry.model)
    step = max(GPU_STEP_FLOOR, 6 * macs * w["batch"] / GPU_FLOPS)  # forward 2 FLOPs per MAC, backward twice that
    chunk = max(GPU_EVAL_FLOOR, 2 * macs * 1000 / GPU_FLOPS)
    gpu = w["steps"] * step + w["evals"] * math.ceil(w["eval_size"] / 1000) * chunk
    return (f"{entry.preset}: {w['trainings']} trainings, {w['steps']:,} steps of {w['batch']}, {w['evals']:,} "
            f"evaluations of {w['eval_size']:,}; {macs / 1e6:,.1f} MMACs/sample\n"
            f"  2 idle cores of this CPU (2 x the measured masked {train_sps:,.1f} train and {eval_sps:,.1f} eval "
            f"samples per CPU second): {cpu / 3600:,.1f} h ({cpu / 86400:,.1f} days)\n"
            f"  one A100, estimated: {w['steps']:,} x max({GPU_STEP_FLOOR * 1e3:.1f} ms, 6 x {macs / 1e6:,.1f}M x "
            f"{w['batch']} / 25 TFLOPS = {6 * macs * w['batch'] / GPU_FLOPS * 1e3:.2f} ms) + evaluations = "
            f"{gpu / 3600:,.2f} h")


def medians(repeats: list[tuple[float, float]]) -> tuple[float, float]:
    """The median wall rate and the median CPU rate over the repeats."""
    import statistics

    return statistics.median(r[0] for r in repeats), statistics.median(r[1] for r in repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"entries: {', '.join(e.name for e in ENTRIES)}")
    parser.add_argument("--repeats", type=int, default=2, help="alternating dense/masked repeats (default 2)")
    parser.add_argument("--estimate", action="store_true", help="also time evaluation and estimate preset run times")
    parser.add_argument("--smoke", action="store_true", help="LeNet-300-100, 3 steps, 2 repeats (a check that it "
                                                             "runs)")
    args = parser.parse_args()
    if args.smoke:
        args.only, args.repeats = ["lenet300"], 2
    before = load_mark()
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}; medians of {args.repeats} alternating "
          f"repeats; samples/s per wall second, and per CPU second")
    print(f"{'model':<24} {'batch':>6} {'dense wall':>11} {'dense CPU':>10} {'masked wall':>12} {'masked CPU':>11} "
          f"  masked time / dense time (CPU): median (range, noise)")
    estimates = []
    for entry in ENTRIES:
        if args.only and entry.name not in args.only:
            continue
        found = setup(entry)
        if found is None:
            continue
        splits, build = found
        entry = replace(entry, steps=3) if args.smoke else entry
        dense, masked = [], []
        for _ in range(args.repeats):
            dense.append(samples_per_second(entry, splits, build, masked=False))
            masked.append(samples_per_second(entry, splits, build, masked=True))
        (dw, dc), (mw, mc) = medians(dense), medians(masked)
        batch = entry.batch or f"all {len(splits.train)}"
        overhead = paired_ratio([d[1] for d in dense], [m[1] for m in masked])  # rates: dense / masked = time ratio
        print(f"{entry.label:<24} {batch!s:>6} {dw:>11,.1f} {dc:>10,.1f} {mw:>12,.1f} {mc:>11,.1f}   {overhead}"
              + ("  (within noise)" if overhead.within_noise() else ""), flush=True)
        if args.estimate and entry.preset:
            estimates.append(estimate(entry, mc, eval_samples_per_second(entry, build)[1]))
    print(load_since(before))
    if estimates:
        print("\nTime of one full run of each preset (every level and baseline), estimated from the throughput above:")
        print("\n".join(estimates))


if __name__ == "__main__":
    main()
