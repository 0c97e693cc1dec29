"""Sparse vs dense inference on this machine, in one run: LeNet-300-100 and VGG-16's fc layers (fc6 25088x4096,
fc7 4096x4096, fc8 4096x1000, built alone) at 50/20/10/5/2% of weights kept, batch 1 and 64.

`ticketlab.deploy.sparse_inference.sparsify` times each layer's kernels (dense, torch CSR, our numba CSR
serial/parallel) and keeps the fastest; the whole model is then timed against the dense one, interleaved, best of many
short rounds.
The per-layer table says how our numba kernel compares with torch's CSR kernel ("ours/torch").
Targets: batch 1 >= 2x dense at 10% kept, >= 6x at 2% kept, never slower than dense.
Run: nice -n 10 .venv/bin/python benchmarks/sparse_inference.py [--threads N] [--quick]
"""

import argparse

import torch

from ticketlab.bench import (
    BATCHES,
    DENSITIES,
    QUICK_DENSITIES,
    format_inference,
    inference_rows,
    lenet300,
    vgg16_fc,
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None, help="torch/numba threads (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="10%% and 2%% kept only")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds of timing per model and batch size")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    densities = QUICK_DENSITIES if args.quick else DENSITIES
    models = {"lenet300": lenet300, "vgg16-fc": vgg16_fc}
    rows = inference_rows(models, densities, BATCHES, args.min_time, progress=True)
    print(format_inference(*rows))


if __name__ == "__main__":
    main()
