"""One Linear layer of K stacked copies trained sparse (accel/csrc/sparse_linear.cpp) against dense batched matmuls.

LeNet-300-100's fc1 (784 -> 300) by default, 8 copies, batch 60, random masks at several kept fractions. Times the
forward pass, the backward pass without and with the input's gradient, against torch's baddbmm / bmm doing the same
dense (what the batched trainer's exact path runs); best of 7 rounds. The batched trainer trains a layer sparse up to
SPARSE_MAX_KEPT (ticketlab.accel.batching.sparse_linear), set from this table.
Run: .venv/bin/python benchmarks/sparse_training_layer.py [--copies 8] [--batch 60] [--shape 784 300] [--threads N]
[--smoke]
"""

import argparse
import statistics
import time

ROUNDS, CALLS = 7, 30


def interleaved_ms(functions: dict) -> dict:
    """{name: [ms per call in each round]}: every round times each function in turn (load hits all alike)."""
    for fn in functions.values():
        for _ in range(5):
            fn()
    times = {name: [] for name in functions}
    for _ in range(ROUNDS):
        for name, fn in functions.items():
            start = time.perf_counter()
            for _ in range(CALLS):
                fn()
            times[name].append(1e3 * (time.perf_counter() - start) / CALLS)
    return times


def layer_times(kept: float, x, dy, bias, g) -> dict:
    """ms per round of the sparse kernel's passes and of the dense batched matmuls doing the same, under a random
    mask."""
    import torch

    from ticketlab.accel.batching.sparse_linear import NO_TENSOR, SparseWeight, kernel

    k, o, f = x.shape[0], dy.shape[2], x.shape[2]
    xt, dyt = x.transpose(1, 2).contiguous(), dy.transpose(1, 2).contiguous()
    masks = torch.rand(k, o, f, generator=g) < kept
    w = torch.randn(k, o, f, generator=g) * masks
    sw = SparseWeight(w, masks)
    values, structure = sw.values.detach(), (sw.rowptr, sw.col, sw.colptr, sw.row, sw.perm)
    return interleaved_ms({
        "sfwd": lambda: kernel().forward(xt, values, bias, sw.rowptr, sw.col, o, False),
        "sbwd": lambda: kernel().backward(dyt, xt, values, *structure, False, NO_TENSOR),
        "sbwdx": lambda: kernel().backward(dyt, xt, values, *structure, True, NO_TENSOR),
        "dfwd": lambda: torch.baddbmm(bias.unsqueeze(1), x, w.mT),
        "dw": lambda: torch.bmm(dy.mT, x),
        "dx": lambda: torch.bmm(dy, w),
    })


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--shape", type=int, nargs=2, default=(784, 300), metavar=("IN", "OUT"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="10%% kept only, 3 short rounds (a check that it runs)")
    args = parser.parse_args()
    import torch  # after parsing: --help answers without importing torch

    from ticketlab.accel.batching.sparse_linear import kernel
    from ticketlab.bench.noise import load_mark, load_since, paired_ratio

    global ROUNDS, CALLS
    kept_fractions = (0.1,) if args.smoke else (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6)
    if args.smoke:
        ROUNDS, CALLS = 3, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    if kernel() is None:
        message = "the sparse training kernel is not built here (no C++ compiler, or TICKETLAB_NO_COMPILE=1)"
        if args.smoke:  # nothing to measure; the script itself ran
            print(f"skipped: {message}")
            return
        raise SystemExit(message)
    k, b, (f, o) = args.copies, args.batch, args.shape
    g = torch.Generator().manual_seed(0)
    x, dy, bias = torch.randn(k, b, f, generator=g), torch.randn(k, b, o, generator=g), torch.randn(k, o, generator=g)
    print(f"{k} copies of a {f} -> {o} Linear layer, batch {b}, {torch.get_num_threads()} threads; ms, median of "
          f"{ROUNDS} interleaved rounds")
    print(f"{'kept':>5} {'sparse fwd':>11} {'sparse bwd':>11} {'+ input grad':>13} {'dense fwd':>10} "
          f"{'dense w grad':>13} {'+ input grad':>13}   sparse/dense (fwd+bwd): median (range, noise)")
    before = load_mark()
    for kept in kept_fractions:
        t = layer_times(kept, x, dy, bias, g)
        m = {name: statistics.median(v) for name, v in t.items()}
        ratio = paired_ratio([a + c for a, c in zip(t["sfwd"], t["sbwd"], strict=True)],
                             [a + c for a, c in zip(t["dfwd"], t["dw"], strict=True)])
        print(f"{kept:5.0%} {m['sfwd']:11.3f} {m['sbwd']:11.3f} {m['sbwdx']:13.3f} {m['dfwd']:10.3f} "
              f"{m['dw']:13.3f} {m['dw'] + m['dx']:13.3f}   {ratio}" + ("  (within noise)" if ratio.within_noise()
                                                                        else ""))
    print(load_since(before))


if __name__ == "__main__":
    main()
