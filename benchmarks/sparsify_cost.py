"""The one-time cost of `sparsify` on a 100M-weight layer (VGG fc6, nn.Linear(25088, 4096), 10% kept, kernels timed
for batch sizes 1 and 64, one thread) against torch's `(weight * mask).to_sparse_csr()` alone, interleaved A/B,
medians, ranges, noise and the machine load. Target: sparsify <= 1 s.
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

    from ticketlab.bench.noise import Ratio, cv, load_mark, load_since, paired_ratio, spread, verdict
    from ticketlab.core.masks import Masks
    from ticketlab.core.pruning import PruneSpec, prune
    from ticketlab.deploy.sparse_inference import sparsify

    torch.set_num_threads(1)
    torch.manual_seed(0)
    shape, pairs = ((512, 256), 2) if args.smoke else ((25088, 4096), args.pairs)
    model = nn.Sequential(nn.Linear(*shape))
    masks = prune(model, Masks.ones(model), PruneSpec(rate=0.9))
    masks.apply(model)
    tiny = nn.Sequential(nn.Linear(64, 64))  # a converted layer loads numba's cached kernels once per process
    sparsify(tiny, prune(tiny, Masks.ones(tiny), PruneSpec(rate=0.9)))
    before = load_mark()
    ours, torch_csr = [], []
    for _ in range(pairs):
        ours.append(timed(lambda: sparsify(model, masks, batch_sizes=(1, 64))))
        torch_csr.append(timed(lambda: (model[0].weight.detach() * masks["0.weight"]).to_sparse_csr()))
    load = load_since(before)
    print(load)
    print(f"sparsify             {spread(ours)}")
    print(f"torch to_sparse_csr  {spread(torch_csr)}")
    print(f"sparsify / to_sparse_csr: {paired_ratio(ours, torch_csr)} (layer {shape[1]}x{shape[0]}, 1 thread)")
    if not args.smoke:  # the target is the 100M-weight layer's
        seconds = Ratio(statistics.median(ours), min(ours), max(ours), cv(ours))  # in units of the 1 s target
        print(f"target sparsify <= 1 s: {verdict(seconds, 1.0, higher_is_better=False, busy=load.busy)}")


if __name__ == "__main__":
    main()
