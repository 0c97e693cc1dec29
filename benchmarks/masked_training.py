"""Masked training throughput against dense training of the same model, in the same run.

LeNet-300-100, batch 60, Adam, on the bundled MNIST subset. Both go through `ticketlab.engine.training.train`; "dense"
trains with no masks at all, "masked" with a 20%-density mask. Repeats alternate between the two so machine noise
hits both alike; medians, ranges and noise figures of the repeats are printed with the machine load, and the verdict
only when the noise allows one (`ticketlab bench --only training` prints the same).
Target: overhead <= 5%.   Run: .venv/bin/python benchmarks/masked_training.py [--threads N] [--repeats N]
[--steps N] [--demo] [--smoke]. On a shared machine `--threads 1` is the steadier measure: CPU time of this process is
then printed too.
"""

import argparse
import subprocess
import sys
import tempfile
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="also time `ticketlab demo` in a fresh directory")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the cores)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--smoke", action="store_true", help="10 steps, 2 repeats (a check that it runs)")
    args = parser.parse_args()
    import torch  # after parsing: --help answers without importing torch

    from ticketlab.bench import format_masked_training, load_mark, load_since, masked_training_times

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.steps, args.repeats = 10, 2
    before = load_mark()
    times = masked_training_times(args.steps, args.repeats)
    load = load_since(before)
    print(format_masked_training(times, args.steps, load.busy))
    print(load)
    if args.demo:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ticketlab.cli", "demo", "--quiet", "--runs-dir", tmp], check=True,
                           stdout=subprocess.DEVNULL)
            print(f"ticketlab demo wall time: {time.perf_counter() - start:.0f} s   (target ~180 s; one run, no "
                  f"noise figure)")


if __name__ == "__main__":
    main()
