"""One global magnitude pruning round on VGG-16's 138M weights, timed against a plain torch.sort of the same weights.

The two alternate over the repeats; medians, ranges, the noise (coefficient of variation of the repeats) and the
machine load are printed, and the verdict on the time target only when the noise allows one. Peak extra memory is
measured in a pass of its own (one pruning round after resetting the peak).
Target: <= 2 s on a 2-core machine, peak extra memory <= 2x the weights.
Run: .venv/bin/python benchmarks/prune_global.py [--repeats 3] [--model vgg16] [--smoke]
"""

import argparse


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets the peak resident set size (Linux)
        f.write("5")


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def alternate(functions: dict, repeats: int) -> dict:
    """Seconds of each call, the functions taking turns so load hits all alike."""
    import time

    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="vgg16", help="a registered model (the target is VGG-16's)")
    parser.add_argument("--smoke", action="store_true", help="LeNet-300-100, 2 repeats (a check that it runs)")
    args = parser.parse_args()
    import torch  # after parsing: --help answers without importing torch

    from ticketlab.bench import load_mark, load_since, paired_ratio, spread, verdict
    from ticketlab.core.masks import Masks
    from ticketlab.core.pruning import PruneSpec, prune
    from ticketlab.models import build_model

    if args.smoke:
        args.model, args.repeats = "lenet300", 2
    torch.manual_seed(0)
    model = build_model(args.model)
    masks = Masks.ones(model)
    weights = sum(masks.numels().values())
    weight_bytes = 4 * weights
    spec = PruneSpec(criterion="magnitude", scope="global", rate=0.2)

    before = load_mark()
    prune(model, masks, spec)  # warm-up
    reset_peak_rss()
    base = rss_bytes()
    prune(model, masks, spec)
    extra = peak_rss_bytes() - base

    flat = torch.cat([p.detach().reshape(-1) for n, p in model.named_parameters() if n in masks])
    t = alternate({"prune": lambda: prune(model, masks, spec), "sort": lambda: torch.sort(flat)}, args.repeats)
    load = load_since(before)
    ratio = paired_ratio(t["prune"], t["sort"])
    seconds = paired_ratio(t["prune"], [1.0] * args.repeats)  # the prune times themselves, with their noise
    goal = verdict(seconds, 2.0, higher_is_better=False, busy=load.busy) if args.model == "vgg16" else "VGG-16's only"
    print(f"{args.model} prunable weights: {weights:,} ({weight_bytes / 2**20:.0f} MiB), threads: "
          f"{torch.get_num_threads()}, {args.repeats} repeats alternating")
    print(f"global magnitude pruning, rate 0.2: {spread(t['prune'])}   target <= 2 s: {goal}")
    print(f"torch.sort of the same weights:     {spread(t['sort'])}")
    print(f"ratio prune / sort:                 {ratio}")
    print(f"peak extra memory during pruning:   {extra / weight_bytes:.2f}x the weights (target <= 2x; one pass)")
    print(load)


if __name__ == "__main__":
    main()
