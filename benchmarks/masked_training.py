"""Masked training throughput against dense training of the same model, in the same run.

LeNet-300-100, batch 60, Adam, on the bundled MNIST subset. Both go through `ticketlab.engine.training.train`; "dense"
trains with no masks at all, "masked" with a 20%-density mask. Repeats alternate between the two so machine noise
hits both alike; the median of the repeats' overheads is printed (`ticketlab bench --only training` prints the same).
Target: overhead <= 5%.   Run: .venv/bin/python benchmarks/masked_training.py [--threads N] [--repeats N]
[--steps N] [--demo]. On a shared machine `--threads 1` is the steadier measure: CPU time of this process is then
printed too.
"""

import argparse
import subprocess
import sys
import tempfile
import time

import torch

from ticketlab.bench import format_masked_training, masked_training_times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", action="store_true", help="also time `ticketlab demo` in a fresh directory")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the cores)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(format_masked_training(masked_training_times(args.steps, args.repeats), args.steps))
    if args.demo:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ticketlab.cli", "demo", "--quiet", "--runs-dir", tmp], check=True,
                           stdout=subprocess.DEVNULL)
            print(f"ticketlab demo wall time: {time.perf_counter() - start:.0f} s   (target ~180 s)")


if __name__ == "__main__":
    main()
