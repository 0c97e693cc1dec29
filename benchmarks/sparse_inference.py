"""Sparse vs dense inference on this machine, in one run: LeNet-300-100 and VGG-16's fc layers (fc6 25088x4096,
fc7 4096x4096, fc8 4096x1000, built alone) at 50/20/10/5/2% of weights kept, batch 1 and 64; with --conv the
convolutional zoo (LeNet-5, Conv-2/4/6, ResNet-20, VGG-16 for CIFAR) at 10% and 2% kept.

`ticketlab.deploy.sparse_inference.sparsify` times each layer's kernels (dense, torch CSR, our numba CSR
serial/parallel; for convolutions also the direct sparse convolution) and keeps the fastest; the whole model is then
timed against the dense one, interleaved, 3 times (each the best of many short rounds): the median, range and noise
of the speedup are printed, and a verdict on each target only when the noise and the machine load allow one.
The per-layer table says how our numba kernel compares with torch's CSR kernel ("ours/torch").
Targets: batch 1 >= 2x dense at 10% kept, >= 6x at 2% kept, never slower than dense; the convolutional zoo: never
slower than dense.
Run: nice -n 10 .venv/bin/python benchmarks/sparse_inference.py [--threads N] [--quick | --conv | --smoke] [--no-fuse]
"""

import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch/numba threads (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="10%% and 2%% kept only")
    parser.add_argument("--conv", action="store_true", help="the convolutional zoo at 10%% and 2%% kept")
    parser.add_argument("--smoke", action="store_true", help="LeNet-300-100 at 2%% kept, batch 1 (a check that it "
                                                             "runs)")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds of timing per model and batch size")
    parser.add_argument("--no-fuse", action="store_true", help="sparsify(fuse=False): no fused Linear chains, no "
                        "ReLU or pool inside the direct convolution (what the fusion adds)")
    args = parser.parse_args()
    import torch  # after parsing: --help answers without importing torch

    from ticketlab.bench.inference import format_inference, inference_report, inference_rows
    from ticketlab.bench.noise import load_mark, load_since
    from ticketlab.bench.workloads import BATCHES, CONV_ZOO, DENSITIES, QUICK_DENSITIES, lenet300, vgg16_fc, zoo

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        print(inference_report(smoke=True))
        return
    before = load_mark()
    densities = QUICK_DENSITIES if args.quick or args.conv else DENSITIES
    models = {name: zoo(name) for name in CONV_ZOO} if args.conv else {"lenet300": lenet300, "vgg16-fc": vgg16_fc}
    rows = inference_rows(models, densities, BATCHES, args.min_time, progress=True, fuse=not args.no_fuse)
    load = load_since(before)
    print(format_inference(*rows, busy=load.busy, conv=args.conv))
    print(load)


if __name__ == "__main__":
    main()
