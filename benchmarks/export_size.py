"""Compact checkpoint size against the dense checkpoint and against the floor (kept values x 4 bytes + 1 bit per
weight of the pruned tensors + the dense tensors), for LeNet-300-100 and Conv-4 at 50/20/10/5/2% of weights kept,
in each format (auto, bitmask, csr). Target: <= 1.15x the floor. Sizes are exact byte counts: no timing, no noise.
Run: .venv/bin/python benchmarks/export_size.py [--quick | --smoke]
"""

import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="LeNet-300-100 at 10%% and 2%% kept only")
    parser.add_argument("--smoke", action="store_true", help="LeNet-300-100 at 2%% kept only (a check that it runs)")
    args = parser.parse_args()
    from ticketlab.bench import export_report  # after parsing: --help answers without importing torch

    print(export_report(quick=args.quick, smoke=args.smoke))


if __name__ == "__main__":
    main()
