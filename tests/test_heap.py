"""The heap policy (engine/heap.py): with it, a large tensor made again after one was freed takes no fresh pages from
the system; without it (glibc's default), every one is page-faulted in anew. Process-wide, so each case runs in a
process of its own."""

import os
import subprocess
import sys

import pytest

ALLOCATE_AGAIN = """
import resource, sys, torch
if sys.argv[1] == "policy":
    from ticketlab.engine.heap import keep_freed_memory
    assert keep_freed_memory()
for _ in range(3):  # 64 MiB, above glibc's largest mmap threshold, made and freed
    t = torch.ones(2**24); del t
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = torch.ones(2**24)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", ALLOCATE_AGAIN, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
                    reason="the policy is glibc's mallopt")
def test_large_tensors_reuse_freed_memory_under_the_policy():
    pages = 2**26 // os.sysconf("SC_PAGE_SIZE")
    assert page_faults("default") > pages // 2  # the system's default: fresh pages every time
    assert page_faults("policy") < pages // 100


def test_the_command_line_applies_it(monkeypatch):
    """`ticketlab` applies the policy before running any command."""
    import ticketlab.cli as cli

    applied = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: applied.append(True))
    assert cli.main(["models"]) == 0
    assert applied == [True]
