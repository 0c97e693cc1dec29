"""Masked training throughput against dense training of the same model, in the same run.

LeNet-300-100, batch 60, Adam, on the bundled MNIST subset. Both go through `ticketlab.training.train`; "dense"
trains with no masks at all, "masked" with a 20%-density mask (gradient masking before, weight masking after
each optimizer step). Repeats alternate between the two so machine noise hits both alike.
Target (issue 6): overhead <= 5%.   Run: .venv/bin/python benchmarks/masked_training.py [--threads N] [--repeats N]
[--demo]. On a shared machine `--threads 1` is the steadier measure: CPU time of this process is then printed too.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ticketlab.config import TrainConfig
from ticketlab.data import load_dataset
from ticketlab.masks import Masks
from ticketlab.models import build_model
from ticketlab.pruning import PruneSpec, prune
from ticketlab.training import make_plan, train

STEPS = 600
REPEATS = 5


def steps_per_second(masks_for, splits, cfg) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process)."""
    model = build_model("lenet300", num_classes=10, seed=0)
    masks = masks_for(model)
    plan = make_plan(cfg, len(splits.train), 60, data_seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        train(model, masks, splits, cfg, plan, Path(tmp))
        return plan.total / (time.perf_counter() - start), plan.total / (time.process_time() - cpu)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", action="store_true", help="also time `ticketlab demo` in a fresh directory")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the cores)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = load_dataset("mnist-mini")
    cfg = TrainConfig(steps=f"{STEPS}it", eval_every=f"{STEPS}it", checkpoint_every=f"{10 * STEPS}it")
    dense_masks = lambda model: Masks({})  # noqa: E731
    sparse_masks = lambda model: prune(model, Masks.ones(model), PruneSpec(rate=0.8))  # noqa: E731
    steps_per_second(dense_masks, splits, cfg)  # warm-up
    dense, masked = [], []
    for _ in range(args.repeats):
        dense.append(steps_per_second(dense_masks, splits, cfg))
        masked.append(steps_per_second(sparse_masks, splits, cfg))
    d, m = max(w for w, _ in dense), max(w for w, _ in masked)
    threads = torch.get_num_threads()
    print(f"LeNet-300-100, batch 60, {STEPS} steps x {args.repeats} repeats, {threads} threads (best of each)")
    print(f"dense training : {d:8.0f} steps/s  ({d * 60:,.0f} samples/s)")
    print(f"masked training: {m:8.0f} steps/s  ({m * 60:,.0f} samples/s)")
    print(f"masked overhead: {100 * (d / m - 1):+.1f}%   (target <= 5%)")
    if threads == 1:  # one thread: CPU time is what the work costs, whatever else the machine runs
        dc, mc = max(c for _, c in dense), max(c for _, c in masked)
        print(f"per CPU second : dense {dc:.0f}, masked {mc:.0f} steps/s, overhead {100 * (dc / mc - 1):+.1f}%")
    if args.demo:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ticketlab.cli", "demo", "--quiet", "--runs-dir", tmp], check=True,
                           stdout=subprocess.DEVNULL)
            print(f"ticketlab demo wall time: {time.perf_counter() - start:.0f} s   (target ~180 s)")


if __name__ == "__main__":
    main()
