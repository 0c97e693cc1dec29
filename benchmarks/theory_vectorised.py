"""Vectorised trials against a loop of single trials, for the phase-transition grid, in the same run.

The same (N, r) grid as `ticketlab theory run phase` (smaller by default so it runs in about a minute): once as the
experiment runs it, all trials and all r of one N as one batched computation (`phase.run_row`), once calling the
same function for one trial and one r at a time (the loop a non-vectorised lab would run). Both use one torch thread
(the lab's default). Prints seconds, cells per second, the speedup ratio, and checks that both give the same success
rates within sampling noise.
Target: speedup >= 5x.   Run: .venv/bin/python benchmarks/theory_vectorised.py [--trials 20] [--full]
"""

import argparse
import dataclasses
import time

import torch

from ticketlab.paper.theory.phase import PhaseSettings, run_row
from ticketlab.paper.theory.seeds import stream
from ticketlab.paper.theory.teacher import Teacher, make_teacher


def vectorised(s: PhaseSettings, teacher: Teacher) -> tuple[float, dict]:
    """Seconds for the whole grid, and the successes per (variant, N, r) cell."""
    start = time.perf_counter()
    rows = [row for N in s.Ns for row in run_row(s, teacher, N, 0)]
    success = {}
    for row in rows:
        key = (row["variant"], row["N"], row["r"])
        success[key] = success.get(key, 0) + row["success"]
    return time.perf_counter() - start, success


def loop(s: PhaseSettings, singles: list[Teacher]) -> tuple[float, dict]:
    start = time.perf_counter()
    success = {}
    for N in s.Ns:
        for r in s.rs:
            for v in s.variants:
                one = dataclasses.replace(s, trials=1, rs=(r,), variants=(v,))
                success[(v, N, r)] = sum(run_row(one, t, N, i)[0]["success"] for i, t in enumerate(singles))
    return time.perf_counter() - start, success


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--full", action="store_true", help="the default-size phase grid (slow for the loop)")
    parser.add_argument("--variants", default="oracle", help="comma-separated Part-1 variants (default: oracle)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = PhaseSettings(trials=args.trials, variants=tuple(args.variants.split(",")))
    if not args.full:
        s = dataclasses.replace(s, rs=(10, 25, 50, 100), Ns=(50, 150, 300, 600, 1000))
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(0, "teacher"))
    singles = [Teacher(teacher.weights[t:t + 1], teacher.support[t:t + 1]) for t in range(s.trials)]
    cells = len(s.rs) * len(s.Ns) * len(s.variants)
    vectorised(dataclasses.replace(s, rs=s.rs[:1], Ns=s.Ns[:1]), teacher)  # warm-up
    vec_seconds, vec_success = vectorised(s, teacher)
    loop_seconds, loop_success = loop(s, singles)
    print(f"phase grid: {len(s.variants)} variants x {len(s.rs)} r x {len(s.Ns)} N = {cells} cells, {s.trials} "
          f"trials per cell, d={s.d}, K={s.K}, max {s.max_iters} iterations, 1 thread")
    print(f"vectorised (trials x r of one N batched): {vec_seconds:7.2f} s  ({cells / vec_seconds:.2f} cells/s)")
    print(f"loop of single trials:                    {loop_seconds:7.2f} s  ({cells / loop_seconds:.2f} cells/s)")
    print(f"speedup: {loop_seconds / vec_seconds:.1f}x (target >= 5x)")
    worst = max(abs(vec_success[k] - loop_success[k]) / s.trials for k in vec_success)
    print(f"largest success-rate difference between the two (different random masks/inits per trial): {worst:.2f}")

if __name__ == "__main__":
    main()
