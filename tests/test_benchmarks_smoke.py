"""Every script under benchmarks/ answers --help with help (without running anything) and runs at its smallest size
(--smoke), each in its own process as a user would start it, as many at a time as there are cores (more at once
only thrash: they are CPU-bound) with one thread each: the figures are not the point here.

Not run with --smoke here, --help only: sweep.py (its smallest sweep still starts ~10 Python processes that import
torch, about a minute on a busy 2-core machine) and run_all.py (it runs all the others again)."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))
HELP_ONLY = {"sweep.py", "run_all.py"}


TIMEOUT = 240  # seconds for any one of them; all together take about 15-30 s on a 2-core machine


def run(job, env) -> subprocess.CompletedProcess:
    script, flag = job
    return subprocess.run([sys.executable, str(BENCHMARKS / script), flag], capture_output=True, text=True, env=env,
                          cwd=BENCHMARKS.parent, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def finished():
    """{(script, flag): CompletedProcess} of every --smoke and --help run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    jobs = [(s, "--smoke") for s in SCRIPTS if s not in HELP_ONLY] + [(s, "--help") for s in SCRIPTS]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return dict(zip(jobs, pool.map(run, jobs, [env] * len(jobs)), strict=True))


def test_every_script_is_covered():
    assert len(SCRIPTS) >= 10 and set(SCRIPTS) >= HELP_ONLY


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_help_and_runs_nothing(script, finished):
    done = finished[script, "--help"]
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and "--smoke" in done.stdout
    assert "machine load" not in done.stdout  # no measurement ran


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s not in HELP_ONLY])
def test_smoke_size_runs_and_reports_its_noise(script, finished):
    done = finished[script, "--smoke"]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    if "skipped:" in out:  # sparse_training_layer.py without its compiled kernel: nothing to measure
        return
    if script == "export_size.py":  # exact sizes: no timing, so no noise and no load line
        assert "no noise" in out
        return
    assert "machine load" in out and "threads used" in out
    assert "noise" in out or "cv " in out
    if "busy: figures too noisy" in out:  # a busy machine: no verdict anywhere
        assert not any(line.endswith((": met", ": not met")) for line in out.splitlines())
