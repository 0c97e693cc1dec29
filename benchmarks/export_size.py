"""Compact checkpoint size against the dense checkpoint and against the floor (kept values x 4 bytes + 1 bit per
weight of the pruned tensors + the dense tensors), for LeNet-300-100 and Conv-4 at 50/20/10/5/2% of weights kept,
in each format (auto, bitmask, csr). Target: <= 1.15x the floor.
Run: .venv/bin/python benchmarks/export_size.py
"""

from ticketlab.bench import export_report

if __name__ == "__main__":
    print(export_report(quick=False))
