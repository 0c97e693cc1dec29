"""Sweeps on a real local Ray cluster (head node on 127.0.0.1, 2 CPUs, one per module): a Ray worker killed mid-run
is retried, the run resumes, and the results equal a local-executor sweep's; an unreachable address starts nothing."""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from .conftest import assert_user_error, run_cli  # noqa: E402
from .test_sweep import comparable, killed_sweep, reference_sweep  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head ... --block` in a subprocess; SIGTERM to it stops exactly this cluster (`ray stop` would stop
    every Ray process of the user on the machine)."""
    port, temp = free_port(), tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short path: Ray's socket names
    log = Path(temp) / "head.log"
    ray = Path(sys.executable).parent / "ray"
    with open(log, "wb") as out:
        head = subprocess.Popen([str(ray), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                                 "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats",
                                 "--temp-dir", temp, "--block"], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while b"block forever" not in log.read_bytes():
        if head.poll() is not None or time.monotonic() > deadline:
            head.kill()
            pytest.fail(f"ray start failed: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    head.terminate()
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        head.kill()
    shutil.rmtree(temp, ignore_errors=True)


def test_unreachable_address_starts_nothing(tmp_path):
    port = free_port()  # nothing listens there
    result = run_cli("sweep", "--preset", "mlp-digits", "--grid", "seeds=0,1", "--executor", "ray",
                     "--ray-address", f"127.0.0.1:{port}", "--sweep-dir", tmp_path / "sweep")
    assert_user_error(result, f"cannot reach the Ray cluster at 127.0.0.1:{port}")
    assert not (tmp_path / "sweep").exists()


def test_ray_sweep_survives_a_killed_worker_with_local_results(cluster, tmp_path, tmp_path_factory):
    reference = reference_sweep(tmp_path_factory)  # computed once per session (test_sweep.py may have done it)
    root, index = killed_sweep(tmp_path, "--executor", "ray", "--ray-address", cluster, parent=True)
    assert index["counts"]["done"] == 4
    assert sorted(e["attempts"] for e in index["runs"]) == [1, 1, 2, 2]
    errors = [e["errors"] for e in index["runs"] if e["attempts"] == 2]
    assert len(errors) == 2 and all(len(x) == 1 and x[0].startswith("Ray task failed") for x in errors), errors
    assert all(e["host"] == socket.gethostname() and e["pid"] for e in index["runs"])
    assert comparable(root) == comparable(reference)
