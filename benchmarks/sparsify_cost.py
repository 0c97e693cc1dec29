"""The one-time cost of `sparsify` on a 100M-weight layer (VGG fc6, nn.Linear(25088, 4096), 10% kept, kernels timed
for batch sizes 1 and 64, one thread) against torch's `(weight * mask).to_sparse_csr()` alone, interleaved A/B,
medians, ranges and the ratio of medians. Target: sparsify <= 1 s.
Run: .venv/bin/python benchmarks/sparsify_cost.py [--pairs N] [--smoke]
"""

import argparse
import statistics
import time


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="interleaved A/B pairs (default 5)")
    parser.add_argument("--smoke", action="store_true", help="a 256x512 layer, 2 pairs (a check that it runs)")
    args = parser.parse_args()
    import torch  # after parsing: --help answers without importing torch
    from torch import nn

    from ticketlab.core.masks import Masks
    from ticketlab.core.pruning import PruneSpec, prune
    from ticketlab.deploy.sparse_inference import sparsify

    torch.set_num_threads(1)
    torch.manual_seed(0)
    shape, pairs = ((512, 256), 2) if args.smoke else ((25088, 4096), args.pairs)
    model = nn.Sequential(nn.Linear(*shape))
    masks = prune(model, Masks.ones(model), PruneSpec(rate=0.9))
    masks.apply(model)
    tiny = nn.Sequential(nn.Linear(8, 8))
    sparsify(tiny, Masks.ones(tiny))  # loads numba's cached kernels once, as any first call in a process does
    ours, torch_csr = [], []
    for _ in range(pairs):
        ours.append(timed(lambda: sparsify(model, masks, batch_sizes=(1, 64))))
        torch_csr.append(timed(lambda: (model[0].weight.detach() * masks["0.weight"]).to_sparse_csr()))
    for name, times in (("sparsify", ours), ("torch to_sparse_csr", torch_csr)):
        print(f"{name:20s} median {statistics.median(times):.2f} s, range {min(times):.2f}-{max(times):.2f} s")
    ratio = statistics.median(ours) / statistics.median(torch_csr)
    print(f"sparsify / to_sparse_csr: {ratio:.2f}x (layer {shape[1]}x{shape[0]}, 1 thread)")
    if not args.smoke:  # the target is the 100M-weight layer's; a verdict only when every pair lies on one side
        verdict = "met" if max(ours) <= 1 else "not met" if min(ours) > 1 else "undecided (the pairs straddle 1 s)"
        print(f"target sparsify <= 1 s: {verdict}")


if __name__ == "__main__":
    main()
