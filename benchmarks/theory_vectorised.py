"""Vectorised trials against a loop of single trials, for the phase-transition grid, in the same run.

The same (N, r) grid as `ticketlab theory run phase` (smaller by default so it runs in about a minute): once as the
experiment runs it, all trials and all r of one N as one batched computation (`phase.run_row`), once calling the
same function for one trial and one r at a time (the loop a non-vectorised lab would run). Both use one torch thread
(the lab's default). The two alternate over the repeats; prints medians and ranges of the seconds, cells per second,
the speedup (median, range, noise: the coefficient of variation of the repeats) with the machine load, a verdict only
when the noise allows one, and checks that both give the same success rates within sampling noise.
Target: speedup >= 5x.
Run: .venv/bin/python benchmarks/theory_vectorised.py [--trials 20] [--repeats 3] [--full | --smoke]
"""

import argparse
import dataclasses
import statistics
import time


def vectorised(s, teacher) -> tuple[float, dict]:
    """Seconds for the whole grid (PhaseSettings s), and the successes per (variant, N, r) cell."""
    from ticketlab.paper.theory.phase import run_row

    start = time.perf_counter()
    rows = [row for N in s.Ns for row in run_row(s, teacher, N, 0)]
    success = {}
    for row in rows:
        key = (row["variant"], row["N"], row["r"])
        success[key] = success.get(key, 0) + row["success"]
    return time.perf_counter() - start, success


def loop(s, singles: list) -> tuple[float, dict]:
    from ticketlab.paper.theory.phase import run_row

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
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of both (default 3)")
    parser.add_argument("--smoke", action="store_true", help="2 trials, one r, one N, 2 repeats (a check that it runs)")
    args = parser.parse_args()
    import torch  # after parsing: --help answers without importing torch

    from ticketlab.bench.noise import load_mark, load_since, paired_ratio, spread, verdict
    from ticketlab.paper.theory.phase import PhaseSettings
    from ticketlab.paper.theory.seeds import stream
    from ticketlab.paper.theory.teacher import Teacher, make_teacher

    torch.set_num_threads(1)
    s = PhaseSettings(trials=2 if args.smoke else args.trials, variants=tuple(args.variants.split(",")))
    if args.smoke:
        s, args.repeats = dataclasses.replace(s, rs=(10,), Ns=(50,)), 2
    elif not args.full:
        s = dataclasses.replace(s, rs=(10, 25, 50, 100), Ns=(50, 150, 300, 600, 1000))
    teacher = make_teacher(s.trials, s.d, s.K, s.r_star, stream(0, "teacher"))
    singles = [Teacher(teacher.weights[t:t + 1], teacher.support[t:t + 1]) for t in range(s.trials)]
    cells = len(s.rs) * len(s.Ns) * len(s.variants)
    vectorised(dataclasses.replace(s, rs=s.rs[:1], Ns=s.Ns[:1]), teacher)  # warm-up
    before, vec_times, loop_times = load_mark(), [], []
    for _ in range(args.repeats):  # alternating, so load hits both alike
        vec_seconds, vec_success = vectorised(s, teacher)
        loop_seconds, loop_success = loop(s, singles)
        vec_times.append(vec_seconds)
        loop_times.append(loop_seconds)
    load = load_since(before)
    speedup = paired_ratio(loop_times, vec_times)
    print(f"phase grid: {len(s.variants)} variants x {len(s.rs)} r x {len(s.Ns)} N = {cells} cells, {s.trials} "
          f"trials per cell, d={s.d}, K={s.K}, max {s.max_iters} iterations, 1 thread, {args.repeats} repeats")
    print(f"vectorised (trials x r of one N batched): {spread(vec_times)}  "
          f"({cells / statistics.median(vec_times):.2f} cells/s)")
    print(f"loop of single trials:                    {spread(loop_times)}  "
          f"({cells / statistics.median(loop_times):.2f} cells/s)")
    print(f"speedup: {speedup}; target >= 5x: {verdict(speedup, 5.0, busy=load.busy)}")
    print(load)
    worst = max(abs(vec_success[k] - loop_success[k]) / s.trials for k in vec_success)
    print(f"largest success-rate difference between the two (different random masks/inits per trial): {worst:.2f}")


if __name__ == "__main__":
    main()
