"""One global magnitude pruning round on VGG-16's 138M weights, timed against a plain torch.sort of the same weights.

Target: <= 2 s on a 2-core machine, peak extra memory <= 2x the weights.
Run: .venv/bin/python benchmarks/prune_global.py
"""

import time

import torch

from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.models import build_model


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets the peak resident set size (Linux)
        f.write("5")


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def best_of(fn, repeats=3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    torch.manual_seed(0)
    model = build_model("vgg16")
    masks = Masks.ones(model)
    weights = sum(masks.numels().values())
    weight_bytes = 4 * weights
    spec = PruneSpec(criterion="magnitude", scope="global", rate=0.2)

    prune(model, masks, spec)  # warm-up
    reset_peak_rss()
    base = rss_bytes()
    t_prune = best_of(lambda: prune(model, masks, spec))
    extra = peak_rss_bytes() - base

    flat = torch.cat([p.detach().reshape(-1) for n, p in model.named_parameters() if n in masks])
    t_sort = best_of(lambda: torch.sort(flat))
    print(f"VGG-16 prunable weights: {weights:,} ({weight_bytes / 2**20:.0f} MiB), threads: {torch.get_num_threads()}")
    print(f"global magnitude pruning, rate 0.2: {t_prune:.2f} s   (target <= 2 s)")
    print(f"torch.sort of the same weights:     {t_sort:.2f} s")
    print(f"ratio prune / sort:                 {t_prune / t_sort:.2f}x")
    print(f"peak extra memory during pruning:   {extra / weight_bytes:.2f}x the weights (target <= 2x)")


if __name__ == "__main__":
    main()
