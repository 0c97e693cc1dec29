"""One Conv2d layer of K stacked copies trained sparse (accel/csrc/sparse_conv.cpp, a direct sparse convolution)
against torch's dense convolution of each copy.

Conv-6's conv2..conv6 on CIFAR-shaped input (64/128/256 channels, 32x32 down to 8x8) and ResNet-20's 3x3 convolutions
(16/32/64 channels, two of them stride 2), 8 copies, batch 60, random masks at several kept fractions. Each round
times the forward and backward pass (gradients of the input, the weights and the bias) of the sparse layer
(`SparseConvWeight`) and of the dense per-copy loop of F.conv2d with the masked weights, one after the other; the
ratio sparse/dense is the median over the rounds' pairs, with its range and noise. `--parts` also times the three
kernels alone (forward, input gradient, kept values' gradient). `--relu`: each side with the ReLU that follows
(fused into the sparse kernel; F.relu after the dense convolutions), as in Conv-6. The batched trainer trains a
convolution sparse up to SPARSE_CONV_MAX_KEPT (ticketlab.accel.batching.sparse_conv), set from this table.
Run: .venv/bin/python benchmarks/sparse_conv_layer.py [--layers conv6.conv2 ...] [--kept 0.05 0.1 ...]
[--copies 8] [--batch 60] [--rounds 7] [--threads N] [--parts] [--relu] [--smoke]
"""

import argparse
import statistics
import time

# name: (in channels, out channels, input size, stride)
LAYERS = {
    "conv6.conv2": (64, 64, 32, 1), "conv6.conv3": (64, 128, 16, 1), "conv6.conv4": (128, 128, 16, 1),
    "conv6.conv5": (128, 256, 8, 1), "conv6.conv6": (256, 256, 8, 1),
    "resnet20.16": (16, 16, 32, 1), "resnet20.16-32s2": (16, 32, 32, 2), "resnet20.32": (32, 32, 16, 1),
    "resnet20.32-64s2": (32, 64, 16, 2), "resnet20.64": (64, 64, 8, 1),
}
KEPT = (0.05, 0.1, 0.2, 0.3, 0.5)
MIN_SECONDS = 0.05  # a timing repeats its pass until it lasts this long (small layers)


def timings(functions: dict, rounds: int) -> dict:
    """{name: [ms per call in each round]}: every round times each function in turn (load hits all alike)."""
    calls = {}
    for name, fn in functions.items():
        fn()
        start = time.perf_counter()
        fn()
        calls[name] = max(1, round(MIN_SECONDS / (time.perf_counter() - start)))
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            times[name].append(1e3 * (time.perf_counter() - start) / calls[name])
    return times


def layer_functions(shape: tuple, kept: float, copies: int, batch: int, parts: bool, relu: bool = False) -> dict:
    """The passes to time for one layer at one kept fraction, under random masks."""
    import torch
    import torch.nn.functional as F

    from ticketlab.accel.batching.sparse_conv import SparseConvWeight, kernel
    from ticketlab.accel.batching.sparse_linear import NO_TENSOR

    c, o, size, stride = shape
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(copies, o, c, 3, 3, generator=g) < kept
    w = (torch.randn(copies, o, c, 3, 3, generator=g) * masks).requires_grad_(True)
    h = torch.randn(copies, batch, c, size, size, generator=g).requires_grad_(True)
    bias = torch.randn(copies, o, generator=g).requires_grad_(True)
    dy = torch.randn(copies, batch, o, -(-size // stride), -(-size // stride), generator=g)
    sw = SparseConvWeight(w.detach(), masks, stride, 1, 1)

    def sparse():
        torch.autograd.grad(sw(h, bias, relu), (h, sw.values, bias), dy)

    def dense():
        y = torch.stack([F.conv2d(h[k], w[k], bias[k], stride, 1) for k in range(copies)])
        torch.autograd.grad(F.relu(y) if relu else y, (h, w, bias), dy)

    functions = {"sparse": sparse, "dense": dense}
    if parts:
        lay, x, gy = sw.layout(size, size), h.detach().flatten(0, 1), dy.flatten(0, 1)
        values, b = sw.values.detach(), bias.detach()
        out, where = lay.forward(x, values, b, relu)
        gate = out if relu else NO_TENSOR
        functions["forward"] = lambda: lay.forward(x, values, b, relu)
        functions["input grad"] = lambda: kernel().input_grad(gy, values[lay.perm], lay.colptr, lay.back_blocks,
                                                              lay.off_back, lay.masks_back, lay.geometry(), gate,
                                                              where)
        functions["kept grad"] = lambda: kernel().kept_grad(gy, x, lay.grad_ptr, lay.grad_blocks, lay.off, lay.masks,
                                                            lay.geometry(), gate, where)
    return functions


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", nargs="+", choices=sorted(LAYERS), default=list(LAYERS), metavar="LAYER",
                        help=f"of {', '.join(LAYERS)} (default: all)")
    parser.add_argument("--kept", type=float, nargs="+", default=KEPT, help="kept fractions (default: %(default)s)")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the cores)")
    parser.add_argument("--parts", action="store_true", help="also time the three kernels alone")
    parser.add_argument("--relu", action="store_true", help="each side with the ReLU after it (fused when sparse)")
    parser.add_argument("--smoke", action="store_true", help="one small layer, 10%% kept, 2 copies, batch 4, "
                        "3 rounds (a check that it runs)")
    args = parser.parse_args()
    import torch  # after parsing: --help answers without importing torch

    from ticketlab.accel.batching.sparse_conv import kernel
    from ticketlab.bench.noise import load_mark, load_since, paired_ratio
    from ticketlab.engine.heap import keep_freed_memory

    keep_freed_memory()  # as `ticketlab` runs: both sides' large tensors reuse freed memory (engine/heap.py)

    if args.smoke:
        args.layers, args.kept, args.copies, args.batch, args.rounds = ["resnet20.64"], [0.1], 2, 4, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    if kernel() is None:
        message = "the sparse convolution kernel is not built here (no C++ compiler, or TICKETLAB_NO_COMPILE=1)"
        if args.smoke:  # nothing to measure; the script itself ran
            print(f"skipped: {message}")
            return
        raise SystemExit(message)
    print(f"{args.copies} copies, batch {args.batch}, forward + backward (input, weight and bias gradients"
          f"{', the ReLU after it' if args.relu else ''}), "
          f"{torch.get_num_threads()} threads; ms per pass, median of {args.rounds} interleaved rounds")
    parts = "   forward  input grad  kept grad" if args.parts else ""
    print(f"{'layer':<18} {'kept':>5} {'sparse':>8} {'dense':>8}{parts}   sparse/dense: median (range, noise)")
    before = load_mark()
    for name in args.layers:
        for kept in args.kept:
            t = timings(layer_functions(LAYERS[name], kept, args.copies, args.batch, args.parts, args.relu),
                        args.rounds)
            m = {part: statistics.median(v) for part, v in t.items()}
            ratio = paired_ratio(t["sparse"], t["dense"])
            extra = f" {m['forward']:9.1f} {m['input grad']:11.1f} {m['kept grad']:10.1f}" if args.parts else ""
            print(f"{name:<18} {kept:5.0%} {m['sparse']:8.1f} {m['dense']:8.1f}{extra}   {ratio}"
                  + ("  (within noise)" if ratio.within_noise() else ""), flush=True)
    print(load_since(before))


if __name__ == "__main__":
    main()
