"""Batched convolutional tickets beyond nn.Sequential (accel/batching/stacked_modules.py): residual blocks and batch
norm, each copy with its own statistics; killed with SIGKILL mid-run, a group resumes to the files of its
uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from ticketlab.accel.batching import train_batched
from ticketlab.core.files import load_tensors
from ticketlab.engine.config import TrainConfig

from .test_batched import tickets_for, without_wall

ROOT = Path(__file__).resolve().parents[1]
CFG = TrainConfig(steps="40it", optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, eval_every="10it",
                  checkpoint_every="4it")
WORKER = """
import sys
from pathlib import Path
from tests.test_batched import tickets_for
from tests.test_batched_conv import CFG
from ticketlab.accel.batching import train_batched
train_batched(tickets_for("resnet", Path(sys.argv[1]), CFG, k=2), CFG)
"""


def finished_files(root: Path) -> list:
    """Every copy's metric rows (but wall time) and final weights and statistics."""
    out = []
    for stage in sorted(root.glob("copy*")):
        rows = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
        tensors = load_tensors(stage / "checkpoint.safetensors")[0]  # but the process's RNG: batches are by step
        out.append((without_wall(rows), {n: t for n, t in tensors.items() if not n.startswith("rng.")}))
    return out


def same(a: list, b: list) -> bool:
    return all(ra == rb and ta.keys() == tb.keys() and all(torch.equal(ta[n], tb[n]) for n in ta)
               for (ra, ta), (rb, tb) in zip(a, b, strict=True))


def test_a_residual_group_killed_mid_run_resumes_to_its_uninterrupted_files(tmp_path):
    train_batched(tickets_for("resnet", tmp_path / "reference", CFG, k=2), CFG)
    expected = finished_files(tmp_path / "reference")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(killed)], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    deadline = time.time() + 120
    while not list(killed.glob("copy1/checkpoint.safetensors")) and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = (killed / "copy0" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["step"] < 40, "killed too late to test a resume"
    train_batched(tickets_for("resnet", killed, CFG, k=2), CFG)
    assert same(finished_files(killed), expected)
