"""One Linear layer of K stacked copies trained sparse (accel/csrc/sparse_linear.cpp) against dense batched matmuls.

LeNet-300-100's fc1 (784 -> 300) by default, 8 copies, batch 60, random masks at several kept fractions. Times the
forward pass, the backward pass without and with the input's gradient, against torch's baddbmm / bmm doing the same
dense (what the batched trainer's exact path runs); best of 7 rounds. The batched trainer trains a layer sparse up to
SPARSE_MAX_KEPT (ticketlab.accel.batching.sparse_linear), set from this table.
Run: .venv/bin/python benchmarks/sparse_training_layer.py [--copies 8] [--batch 60] [--shape 784 300] [--threads N]
"""

import argparse
import time

import torch

from ticketlab.accel.batching.sparse_linear import NO_TENSOR, SparseWeight, kernel


def best_ms(fn, rounds: int = 7, calls: int = 30) -> float:
    for _ in range(5):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return 1e3 * best


def layer_times(kept: float, x, dy, bias, g) -> dict:
    """ms of the sparse kernel's passes and of the dense batched matmuls doing the same, under a random mask."""
    k, o, f = x.shape[0], dy.shape[2], x.shape[2]
    xt, dyt = x.transpose(1, 2).contiguous(), dy.transpose(1, 2).contiguous()
    masks = torch.rand(k, o, f, generator=g) < kept
    w = torch.randn(k, o, f, generator=g) * masks
    sw = SparseWeight(w, masks)
    values, structure = sw.values.detach(), (sw.rowptr, sw.col, sw.colptr, sw.row, sw.perm)
    return {
        "sfwd": best_ms(lambda: kernel().forward(xt, values, bias, sw.rowptr, sw.col, o, False)),
        "sbwd": best_ms(lambda: kernel().backward(dyt, xt, values, *structure, False, NO_TENSOR)),
        "sbwdx": best_ms(lambda: kernel().backward(dyt, xt, values, *structure, True, NO_TENSOR)),
        "dfwd": best_ms(lambda: torch.baddbmm(bias.unsqueeze(1), x, w.mT)),
        "dw": best_ms(lambda: torch.bmm(dy.mT, x)),
        "dx": best_ms(lambda: torch.bmm(dy, w)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--shape", type=int, nargs=2, default=(784, 300), metavar=("IN", "OUT"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if kernel() is None:
        raise SystemExit("the sparse training kernel is not built here (no C++ compiler, or TICKETLAB_NO_COMPILE=1)")
    k, b, (f, o) = args.copies, args.batch, args.shape
    g = torch.Generator().manual_seed(0)
    x, dy, bias = torch.randn(k, b, f, generator=g), torch.randn(k, b, o, generator=g), torch.randn(k, o, generator=g)
    print(f"{k} copies of a {f} -> {o} Linear layer, batch {b}, {torch.get_num_threads()} threads; ms, best of 7")
    print(f"{'kept':>5} {'sparse fwd':>11} {'sparse bwd':>11} {'+ input grad':>13} {'dense fwd':>10} "
          f"{'dense w grad':>13} {'+ input grad':>13} {'sparse/dense (fwd+bwd)':>23}")
    for kept in (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6):
        t = layer_times(kept, x, dy, bias, g)
        ratio = (t["sfwd"] + t["sbwd"]) / (t["dfwd"] + t["dw"])
        print(f"{kept:5.0%} {t['sfwd']:11.3f} {t['sbwd']:11.3f} {t['sbwdx']:13.3f} {t['dfwd']:10.3f} "
              f"{t['dw']:13.3f} {t['dw'] + t['dx']:13.3f} {ratio:23.2f}")


if __name__ == "__main__":
    main()
