"""Sweeps on the local executor: spec validation, index, resume and skip, a worker killed mid-run, locks, report."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from ticketlab.engine.presets import build_config
from ticketlab.engine.store import run_lock
from ticketlab.errors import TicketlabError
from ticketlab.sweep import parse_spec, run_sweep
from ticketlab.sweep.jobs import pack
from ticketlab.sweep.spec import parse_grid_arg

from .conftest import assert_user_error, comparable, main_in_process, run_cli

# 4 runs (2 learning rates x 2 seeds) of a few seconds each; checkpoints every 5 steps so a kill loses little.
TINY = {
    "preset": "mlp-digits",
    "set": {"train.steps": "40it", "train.eval_every": "10it", "train.checkpoint_every": "5it", "lottery.levels": 2,
            "lottery.baselines": ["random_pruning"]},
    "grid": {"train.lr": [0.001, 0.002], "seeds": [0, 1]},
    "workers": 2,
}


def reference_sweep(tmp_path_factory) -> Path:
    """The uninterrupted local sweep, shared by every test module of the session (a finished sweep is skipped)."""
    root = tmp_path_factory.getbasetemp() / "sweep-reference"
    index = run_sweep(parse_spec(TINY), root, quiet=True)
    assert index.count()["done"] == 4
    return root


def worker_pid(lock: Path) -> int | None:
    """The live sweep worker holding `lock`, if any (the lock file names its holder)."""
    try:
        pid = json.loads(lock.read_text())["pid"]
        alive = b"ticketlab.sweep.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (ValueError, KeyError, OSError):
        return None
    return pid if alive else None


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def kill_mid_run(sweep_dir: Path, proc: subprocess.Popen, victim: str = "worker") -> tuple[int, dict[Path, int]]:
    """SIGKILL a worker, the process that started it (`parent`: a Ray worker) or the sweep's `driver` once a run has
    finished a stage; returns the worker's pid and the modification times of the stage summaries written by then."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        for lock in sorted((sweep_dir / "runs").glob("*/.lock")):
            pid = worker_pid(lock)
            if pid and (lock.parent / "level_00" / "summary.json").exists():
                parent = int(Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1])
                os.kill({"worker": pid, "parent": parent, "driver": proc.pid}[victim], signal.SIGKILL)
                return pid, {p: p.stat().st_mtime_ns for p in (sweep_dir / "runs").rglob("summary.json")}
        time.sleep(0.02)
    pytest.fail("no worker was caught mid-run")


def unchanged(summaries: dict[Path, int]) -> None:
    """Finished stages were not trained again: the retry resumed."""
    for path, mtime in summaries.items():
        assert path.stat().st_mtime_ns == mtime, path


def start_sweep(tmp_path: Path, *extra: str) -> tuple[Path, subprocess.Popen]:
    spec_file, root = tmp_path / "tiny.yaml", tmp_path / "sweep"
    spec_file.write_text(yaml.safe_dump(TINY))
    proc = subprocess.Popen([sys.executable, "-m", "ticketlab.cli", "sweep", str(spec_file), "--sweep-dir", str(root),
                             "--quiet", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return root, proc


def killed_sweep(tmp_path: Path, *extra: str, parent: bool = False) -> tuple[Path, dict]:
    """Run TINY with the real command, kill one worker mid-run; the sweep must still end with every run done."""
    root, proc = start_sweep(tmp_path, *extra)
    _, summaries = kill_mid_run(root, proc, "parent" if parent else "worker")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out, err)
    unchanged(summaries)
    return root, json.loads((root / "index.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_sweep(tmp_path_factory)


# -- the spec ---------------------------------------------------------------------------------------------------------
def test_spec_expands_the_grid_into_validated_runs():
    runs = parse_spec(TINY).runs()
    assert [r.point for r in runs] == [{"train.lr": lr, "seeds": s} for lr in (0.001, 0.002) for s in (0, 1)]
    cfg = runs[3].config
    assert (cfg.train.lr, cfg.seeds.init, cfg.seeds.data, cfg.seeds.prune, cfg.lottery.levels) == (0.002, 1, 1, 1, 2)
    expected = build_config("mlp-digits", {"train": {"lr": 0.002, "steps": "40it", "eval_every": "10it",
                                                     "checkpoint_every": "5it"},
                                           "lottery": {"levels": 2, "baselines": ["random_pruning"]},
                                           "seeds": {"init": 1, "data": 1, "prune": 1}})
    assert runs[3].name == expected.run_name()  # the ordinary run directory
    nested = parse_spec({**TINY, "set": {"train": {"steps": "40it"}}})  # {section: {key: v}} works too
    assert nested.set == {"train.steps": "40it"}


def test_packing_groups_runs_that_differ_only_in_seeds():
    runs = parse_spec(TINY).runs()
    assert [[r.point for r in j.runs] for j in pack(runs, workers=2)] == [
        [{"train.lr": 0.001, "seeds": 0}, {"train.lr": 0.001, "seeds": 1}],
        [{"train.lr": 0.002, "seeds": 0}, {"train.lr": 0.002, "seeds": 1}]]
    assert [len(j.runs) for j in pack(runs, workers=4)] == [1, 1, 1, 1]  # no idle worker
    assert [len(j.runs) for j in pack(runs, workers=1)] == [2, 2]  # never across learning rates
    assert [len(j.runs) for j in pack(runs, workers=1, enabled=False)] == [1, 1, 1, 1]


@pytest.mark.parametrize("change, message", [
    ({"gird": {}}, "unknown sweep key 'gird' (did you mean 'grid'?)"),
    ({"grid": {}}, "sweep grid is empty"),
    ({"grid": None}, "sweep grid is empty"),
    ({"grid": {"train.lr": []}}, "sweep grid key 'train.lr' needs a non-empty list"),
    ({"grid": {"train.lr": 0.1}}, "needs a non-empty list of values, got 0.1"),
    ({"grid": {"train.lrr": [0.1]}}, "did you mean 'lr'?"),
    ({"grid": {"trian.lr": [0.1]}}, "did you mean 'train'?"),
    ({"grid": {"lr": [0.1]}}, "must look like section.key"),
    ({"grid": {"train.lr": [-1.0]}}, "train.lr must be > 0"),
    ({"grid": {"seeds": [0, 0]}}, "give the same run"),
    ({"set": {"train.lr": 0.1}, "grid": {"train.lr": [0.2]}}, "'train.lr' is in both set and grid"),
    ({"executor": "rey"}, "did you mean 'ray'?"),
    ({"executor": "ray"}, "needs ray.address"),
    ({"ray": {"adress": "h:1"}}, "did you mean 'address'?"),
    ({"ray": {"address": "h:1", "num_cpus": 0}}, "ray.num_cpus must be a number > 0"),
    ({"workers": 0}, "workers must be an integer >= 1"),
    ({"retries": "two"}, "retries must be an integer >= 0"),
    ({"preset": "mlp-digitz"}, "did you mean 'mlp-digits'?"),
    ({"set": {"model.name": "lenet3000"}}, "lenet3000"),
])
def test_bad_specs_are_refused_with_one_line(change, message):
    with pytest.raises(TicketlabError) as e:
        parse_spec({**TINY, **change}).runs()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_grid_values_on_the_command_line():
    assert parse_grid_arg("train.lr=0.001,3e-3") == ("train.lr", [0.001, "3e-3"])
    assert parse_grid_arg("prune.exclude=[fc3.weight],[]") == ("prune.exclude", [["fc3.weight"], []])
    with pytest.raises(TicketlabError, match="must look like section.key=v1,v2"):
        parse_grid_arg("train.lr")


def test_cli_bad_sweeps_start_nothing(tmp_path, capsys):
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump({**TINY, "grdi": {"seeds": [0]}}))
    assert_user_error(run_cli("sweep", spec_file, "--sweep-dir", tmp_path / "a"), "did you mean 'grid'?")
    # the other message through the command's main() in this process (its real command line: above)
    assert_user_error(main_in_process(capsys, "sweep", "--preset", "mlp-digits", "--grid", "train.lrr=0.1,0.2",
                                      "--sweep-dir", tmp_path / "b"), "did you mean 'lr'?")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# -- running ----------------------------------------------------------------------------------------------------------
def test_sweep_writes_index_and_ordinary_run_directories(reference):
    index = json.loads((reference / "index.json").read_text())
    assert index["counts"] == {"pending": 0, "running": 0, "done": 4, "failed": 0}
    runs = parse_spec(TINY).runs()
    assert [e["run"] for e in index["runs"]] == [r.name for r in runs]
    for entry, plan in zip(index["runs"], runs, strict=True):
        assert entry["dir"] == f"runs/{plan.name}" and entry["point"] == plan.point
        assert entry["attempts"] == 1 and entry["error"] is None and entry["pid"] > 0
        assert (reference / entry["dir"] / "level_02" / "baselines" / "random_pruning" / "summary.json").exists()
    assert {e["job"] for e in index["runs"]} == {"job-000", "job-001"}
    summary = json.loads((reference / index["runs"][0]["dir"] / "level_01" / "summary.json").read_text())
    assert summary["batched"] == 4  # two seeds x (IMP + random pruning) trained as one batched model
    assert yaml.safe_load((reference / "sweep.yaml").read_text())["grid"] == TINY["grid"]


def test_rerun_skips_finished_runs(reference):
    logs = {p: p.read_text() for p in (reference / "logs").iterdir()}
    index = run_sweep(parse_spec(TINY), reference, quiet=True)
    assert [e["attempts"] for e in index.entries] == [1, 1, 1, 1]
    assert logs == {p: p.read_text() for p in (reference / "logs").iterdir()}  # no worker started


def test_report_aggregates_a_sweep_over_seeds(reference):
    from ticketlab.report import group_runs, load_runs

    groups = group_runs(load_runs(reference))
    assert sorted(len(g.runs) for g in groups) == [2, 2]  # two learning rates, two seeds each


def test_killed_worker_is_retried_and_resumes_to_identical_results(reference, tmp_path):
    root, index = killed_sweep(tmp_path)
    assert index["counts"]["done"] == 4
    attempts = sorted(e["attempts"] for e in index["runs"])
    assert attempts == [1, 1, 2, 2]  # the killed job's two runs, once more
    assert [e["errors"] for e in index["runs"] if e["attempts"] == 2] == [["killed by SIGKILL"]] * 2
    assert comparable(root) == comparable(reference)


def test_rerun_after_a_killed_driver_resumes_to_identical_results(reference, tmp_path):
    root, proc = start_sweep(tmp_path)
    worker, summaries = kill_mid_run(root, proc, "driver")
    proc.wait(30)
    deadline = time.monotonic() + 10
    while alive(worker):  # a worker dies with its driver: no orphan trains on
        assert time.monotonic() < deadline, "worker outlived its driver"
        time.sleep(0.05)
    statuses = [e["status"] for e in json.loads((root / "index.json").read_text())["runs"]]
    assert "running" in statuses and "pending" not in statuses
    index = run_sweep(parse_spec(TINY), root, quiet=True)  # the same sweep again: resumes what was running
    assert index.count()["done"] == 4
    unchanged(summaries)
    assert comparable(root) == comparable(reference)


def test_other_sweep_in_the_same_directory_is_refused(reference):
    with pytest.raises(TicketlabError, match="holds another sweep"):
        run_sweep(parse_spec({**TINY, "grid": {"seeds": [5]}}), reference, quiet=True)


def test_user_error_in_a_run_fails_it_without_retries(tmp_path):
    spec = parse_spec({**TINY, "set": {**TINY["set"], "lottery.rewind": "900it"}, "grid": {"seeds": [0]}})
    index = run_sweep(spec, tmp_path, quiet=True)
    [entry] = index.entries
    assert entry["status"] == "failed" and entry["attempts"] == 1
    assert "lottery.rewind '900it' is step 900, beyond the 40 training steps" in entry["error"]


# -- locks ------------------------------------------------------------------------------------------------------------
def test_run_directory_in_use_is_refused_naming_the_holder(tmp_path):
    sets = [x for k, v in TINY["set"].items() for x in ("--set", f"{k}={json.dumps(v)}")]
    name = build_config("mlp-digits", overrides=[s for s in sets if s != "--set"]).run_name()
    with run_lock(tmp_path / name):
        result = run_cli("run", "mlp-digits", *sets, "--runs-dir", tmp_path)
    assert_user_error(result, f"run directory {tmp_path / name} is in use by pid {os.getpid()}")
    assert not (tmp_path / name / "level_00").exists()


def test_second_sweep_on_a_sweep_directory_is_refused(tmp_path):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(TINY))
    with run_lock(tmp_path / "sweep", what="sweep directory"):  # as a running sweep holds it
        result = run_cli("sweep", spec_file, "--sweep-dir", tmp_path / "sweep")
    assert_user_error(result, "sweep directory", f"is in use by pid {os.getpid()}")
    assert not (tmp_path / "sweep" / "runs").exists()


def test_a_waiting_writer_gets_the_lock_only_after_the_holder(tmp_path, capsys):
    events = []

    def second():
        with run_lock(tmp_path, wait=True):
            events.append("second")

    with run_lock(tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        events.append("first done")
    thread.join(10)
    assert events == ["first done", "second"]
    assert "waiting for run directory" in capsys.readouterr().err


def test_a_sweep_run_has_the_bits_of_ticketlab_run_on_one_thread(reference, tmp_path):
    """docs/sweeps.md: the same config gives the same run directory name and, under the same thread count (a sweep
    worker here has one: 2 cores / 2 workers), the same bits, although the sweep packs seeds into batched models."""
    entry = json.loads((reference / "index.json").read_text())["runs"][0]
    assert entry["point"] == {"train.lr": 0.001, "seeds": 0}
    sets = [x for k, v in {**TINY["set"], "train.lr": 0.001}.items()
            for x in ("--set", f"{k}={json.dumps(v) if isinstance(v, list) else v}")]
    done = subprocess.run([sys.executable, "-m", "ticketlab.cli", "run", "mlp-digits", "--seeds", "0", "--quiet",
                           "--runs-dir", str(tmp_path), *sets], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    alone = tmp_path / Path(entry["dir"]).name
    assert alone.is_dir(), sorted(p.name for p in tmp_path.iterdir())
    mine, swept = comparable(alone), comparable(reference / entry["dir"])
    for found in (mine, swept):  # how many stages trained as one model: scheduling, not results
        for rel in [r for r in found if r.endswith("summary.json")]:
            found[rel].pop("batched")
    assert mine == swept
