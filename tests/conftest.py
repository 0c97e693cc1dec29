import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

os.environ.setdefault("CI", "1")  # progress bars off in tests
# One thread per process: the suite runs CLI subprocesses beside pytest, and OpenMP threads spinning against
# each other on 2 cores cost far more than they gain on these tiny models. Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


class Tiny(nn.Module):
    """Two conv layers and two linear layers: enough structure for masks and pruning tests."""

    input_shape = (1, 6, 6)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 36, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.out(torch.relu(self.fc1(x.flatten(1))))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return Tiny()


def comparable(root) -> dict:
    """Everything the run(s) under `root` produced except wall-clock times and the lock's holder: metrics rows,
    summaries, tensors, configs. Equal for two runs = the same results."""
    from ticketlab.core.files import load_tensors

    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.name == "metrics.jsonl":
            out[rel] = [{k: v for k, v in json.loads(line).items() if k != "wall"}
                        for line in path.read_text().splitlines()]
        elif path.name == "summary.json":
            out[rel] = {k: v for k, v in json.loads(path.read_text()).items() if k != "wall"}
        elif path.suffix == ".safetensors":
            out[rel] = {k: v.tolist() for k, v in load_tensors(path)[0].items()}
        elif path.name == "config.json":
            out[rel] = json.loads(path.read_text())
    return out


def file_stamps(root) -> dict:
    """Modification time of every file under `root` but the run lock, which each run rewrites with its holder."""
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


def run_cli(*args, cwd=None, timeout=300):
    """Run the real `ticketlab` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "ticketlab.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
    )


def run_clis(*argvs, cwd=None, timeout=300) -> list[subprocess.CompletedProcess]:
    """Several independent real `ticketlab` commands, as many at a time as there are cores (each is ~2 s of start-up;
    more at once only thrash a busy machine). `cwd`: one directory for all, or a list of one per command."""
    cwds = cwd if isinstance(cwd, list) else [cwd] * len(argvs)
    assert len(cwds) == len(argvs)
    with ThreadPoolExecutor(min(len(argvs), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda argv, where: run_cli(*argv, cwd=where, timeout=timeout), argvs, cwds))


def main_in_process(capsys, *args):
    """`ticketlab ARGS` through the CLI's own main() in this process, captured as a CompletedProcess. For the further
    bad-input cases of a command whose real command line (run_cli) is tested beside them: one real process per
    command, not per message (each costs ~2 s of start-up)."""
    from ticketlab.cli import main

    capsys.readouterr()  # what was printed before is not this command's
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's errors and --help
        code = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_user_error(result, *needles):
    """Exit status 2, one line on stderr naming the bad value, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def one_thread():
    """One intra-op thread: where torch's results are bit-reproducible across code paths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
