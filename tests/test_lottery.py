"""IMP end to end on tiny bundled data: rewinding, baselines, resume after kill -9, config errors."""

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from ticketlab.accel import select
from ticketlab.core.masks import Masks
from ticketlab.engine.config import Config, from_dict
from ticketlab.engine.lottery import REINIT_SEED_OFFSET, Lottery
from ticketlab.engine.presets import PRESETS, build_config
from ticketlab.engine.store import load_weights
from ticketlab.errors import TicketlabError

from .conftest import assert_user_error, comparable, main_in_process, run_cli

FAST = ["train.steps=60it", "train.eval_every=20it", "train.checkpoint_every=20it", "lottery.levels=2"]


def fast_config(*extra):
    return build_config("mlp-digits", overrides=[*FAST, *extra])


def tensors(path):
    from ticketlab.core.files import load_tensors

    return load_tensors(path)[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    cfg = fast_config("lottery.baselines=[random_pruning,random_reinit,oneshot]")
    lottery = Lottery.open(cfg, tmp_path_factory.mktemp("runs"))
    lottery.run()
    return lottery


def test_levels_prune_and_rewind_to_init(finished):
    store = finished.store
    init = tensors(store.init_path)
    masks = [Masks.load(store.level(i) / "masks.safetensors") for i in range(3)]
    assert [round(m.density(), 3) for m in masks] == [1.0, 0.802, 0.643]
    assert masks[2].overlap(masks[1]) == 1.0  # masks only shrink
    # The start of level 2 is θ0 on the kept weights: rewind exactly, zero elsewhere.
    model, start, _ = finished.start_point(2)
    masks[2].apply(model)
    for name, p in model.state_dict().items():
        if name in masks[2]:
            assert torch.equal(p[masks[2][name]], init[name][masks[2][name]])
            assert (p[~masks[2][name]] == 0).all()
    assert start == 0


def test_baselines_use_stated_masks_and_inits(finished):
    store = finished.store
    ticket = Masks.load(store.level(2) / "masks.safetensors")
    random = Masks.load(store.baseline(2, "random_pruning") / "masks.safetensors")
    reinit = Masks.load(store.baseline(2, "random_reinit") / "masks.safetensors")
    oneshot = Masks.load(store.baseline(2, "oneshot") / "masks.safetensors")
    assert random.kept() == ticket.kept() and random != ticket  # same per-tensor densities, other weights
    assert reinit == ticket
    assert oneshot.kept() == ticket.kept()
    dense_final = load_weights(store.level(0) / "final.safetensors", finished.fresh_model(0))
    params = dict(dense_final.named_parameters())
    for name, m in oneshot.items():  # one-shot keeps the largest dense final weights of each tensor
        w = params[name].detach().abs()
        assert w[m].min() >= w[~m].max()
    fresh = finished.fresh_model(finished.cfg.seeds.init + REINIT_SEED_OFFSET * 2).state_dict()
    assert not torch.equal(fresh["fc1.weight"], tensors(store.init_path)["fc1.weight"])
    summary = json.loads((store.baseline(2, "random_reinit") / "summary.json").read_text())
    assert summary["kind"] == "random_reinit" and summary["density"] == pytest.approx(ticket.density())


def test_late_rewinding_saves_and_uses_theta_k(tmp_path):
    lottery = Lottery.open(fast_config("lottery.rewind=20it", "lottery.levels=1", "lottery.baselines=[]"), tmp_path)
    lottery.run()
    theta_k = tensors(lottery.store.rewind_path)
    assert not torch.equal(theta_k["fc1.weight"], tensors(lottery.store.init_path)["fc1.weight"])
    model, start, plan = lottery.start_point(1)
    assert start == 20 and plan.start == 20
    assert torch.equal(model.state_dict()["fc1.weight"], theta_k["fc1.weight"])
    rows = [json.loads(line) for line in (lottery.store.level(1) / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 20 and rows[-1]["step"] == 60


@pytest.mark.parametrize("mode", ["none", "lr"])
def test_finetune_and_lr_rewinding_start_from_final_weights(tmp_path, mode):
    lottery = Lottery.open(fast_config(f"lottery.rewind={mode}", "lottery.levels=1", "lottery.baselines=[]"), tmp_path)
    lottery.run()
    model, start, plan = lottery.start_point(1)
    final0 = tensors(lottery.store.level(0) / "final.safetensors")
    assert start == 0 and torch.equal(model.state_dict()["fc1.weight"], final0["fc1.weight"])
    lrs = {plan.lr(s) for s in range(plan.total)}
    assert len(lrs) == 1  # constant schedule here: fine-tuning and lr rewinding both use it


def test_rerun_resumes_without_retraining(finished):
    before = {p: p.stat().st_mtime_ns for p in finished.store.root.rglob("summary.json")}
    Lottery.open(finished.cfg, finished.store.root.parent).run()
    after = {p: p.stat().st_mtime_ns for p in finished.store.root.rglob("summary.json")}
    assert before == after


def test_other_config_in_same_directory_is_refused(finished, tmp_path):
    record = json.loads(finished.store.config_path.read_text())
    record["hash"] = "0000000000"
    target = tmp_path / finished.store.root.name
    target.mkdir()
    (target / "config.json").write_text(json.dumps(record))
    with pytest.raises(TicketlabError, match="holds a different config"):
        Lottery.open(finished.cfg, tmp_path)
    assert json.loads((target / "config.json").read_text())["hash"] == "0000000000"  # untouched


def test_stop_at_target_density(tmp_path):
    lottery = Lottery.open(fast_config("lottery.levels=5", "lottery.target_density=0.7", "lottery.baselines=[]"),
                           tmp_path)
    lottery.run()
    assert lottery.store.levels() == [0, 1, 2]


def test_hash_regression():
    # Pinned: a change here renames every existing run directory. Change only on purpose.
    assert Config().hash() == "44136fa355"
    assert build_config("lenet300-mnist-mini").hash() == build_config("lenet300-mnist-mini").hash()
    pinned = {"lenet300-mnist": "d6595ff6f3", "resnet20-cifar10": "929e3687ad", "lenet300-mnist-mini": "398e34ebce"}
    assert {name: build_config(name).hash() for name in pinned} == pinned
    # Where the data lives and checkpoint frequency do not change results, so not the hash either.
    moved = build_config("lenet300-mnist", overrides=["data.root=/elsewhere", "train.checkpoint_every=7it"])
    assert moved.hash() == build_config("lenet300-mnist").hash()


def test_every_preset_is_valid():
    for name in PRESETS:
        build_config(name)


@pytest.mark.parametrize("data,match", [
    ({"train": {"lrr": 0.1}}, "did you mean 'lr'"),
    ({"trian": {}}, "did you mean 'train'"),
    ({"train": {"lr": "fast"}}, "train.lr must be float"),
    ({"train": {"steps": "10 epochs"}}, "train.steps '10 epochs' must look like"),
    ({"prune": {"rate": 1.0}}, "prune.rate must be in \\[0, 1\\)"),
    ({"lottery": {"rewind": "sometime"}}, "lottery.rewind"),
    ({"lottery": {"baselines": ["random"]}}, "did you mean 'random_reinit'|did you mean 'random_pruning'"),
    ({"train": {"optimizer": "adamm"}}, "did you mean 'adam'"),
])
def test_bad_config_values(data, match):
    with pytest.raises(TicketlabError, match=match):
        from_dict(data)


def test_rewind_beyond_training_is_refused(tmp_path):
    with pytest.raises(TicketlabError, match="beyond the 60 training steps"):
        Lottery.open(fast_config("lottery.rewind=100it"), tmp_path).run()


def test_cli_bad_inputs(tmp_path, capsys):
    assert_user_error(run_cli("run", "lenet300-mnist-minii", "--runs-dir", tmp_path),
                      "did you mean 'lenet300-mnist-mini'")
    # The same command's other messages in this process (the real command line's exit and stderr: above).
    assert_user_error(main_in_process(capsys, "run", "mlp-digits", "--set", "train.lrr=1", "--runs-dir", tmp_path),
                      "did you mean 'lr'")
    assert_user_error(main_in_process(capsys, "run", "mlp-digits", "--set", "model.name=lenet3000", "--runs-dir",
                                      tmp_path), "lenet3000")
    assert_user_error(main_in_process(capsys, "run", "lenet300-mnist", "--set", f"data.root={tmp_path}/nowhere",
                                      "--runs-dir", tmp_path), "ticketlab data fetch")


KILL_SETS = [*FAST, "train.checkpoint_every=7it"]
# Kill moments (file, rows): once the run's file holds that many lines (0: exists), after a random delay; None: a
# random delay after launch (start-up). One drawn from each group: early (start-up or level 0) and deep (level 0 done
# or mid level 1, where the IMP ticket and its baselines train as one batched model). Never in level 2: a whole
# stage is left to train when the kill lands, so the resume always has work to do.
KILL_EVENTS = [[None, ("level_00/metrics.jsonl", 1), ("level_00/metrics.jsonl", 2)],
               [("level_00/summary.json", 0), ("level_01/metrics.jsonl", 1), ("level_01/metrics.jsonl", 2),
                ("level_01/metrics.jsonl", 3)]]


def reached(runs_dir, event) -> bool:
    path, rows = event
    found = list(runs_dir.glob(f"*/{path}"))
    return bool(found) and found[0].read_bytes().count(b"\n") >= rows


def killed_then_resumed(runs_dir, event, delay: float):
    """`ticketlab run` killed -9 `delay` seconds after `event` (KILL_EVENTS), then the same command again to the end;
    returns the run directory."""
    args = [sys.executable, "-m", "ticketlab.cli", "run", "mlp-digits", "--runs-dir", str(runs_dir), "--quiet",
            *[x for s in KILL_SETS for x in ("--set", s)]]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while event and not reached(runs_dir, event):
            assert proc.poll() is None and time.monotonic() < deadline, f"{event} never reached"
            time.sleep(0.005)
        time.sleep(delay)
    finally:
        proc.kill()
    assert proc.wait() == -signal.SIGKILL, f"the run finished before the kill after {event}"
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return next(runs_dir.iterdir())


def test_kill_9_at_random_moments_then_resume_gives_identical_results(tmp_path, one_thread):
    rng = torch.Generator().manual_seed(2024)  # random but repeatable kill points
    events = [group[torch.randint(len(group), (1,), generator=rng).item()] for group in KILL_EVENTS]
    kills = [(e, (3.0 if e is None else 0.1) * torch.rand(1, generator=rng).item()) for e in events]
    with ThreadPoolExecutor(len(kills)) as pool:  # both killed runs at once, each in its own run directory
        killed = [pool.submit(killed_then_resumed, tmp_path / f"kill{i}", event, delay)
                  for i, (event, delay) in enumerate(kills)]
        # Meanwhile the uninterrupted run, in this process: one thread, the command's kernels and preset name, so
        # every file holds the same bits as an uninterrupted `ticketlab run`'s.
        cfg = build_config("mlp-digits", overrides=KILL_SETS)
        expected = comparable(Lottery.open(cfg, tmp_path / "ref", "mlp-digits", accelerator=select()).run().root)
        run_dirs = [f.result() for f in killed]
    assert "level_02/summary.json" in expected
    for run_dir, (event, delay) in zip(run_dirs, kills, strict=True):
        assert comparable(run_dir) == expected, f"differs after a kill {delay:.2f}s after {event or 'launch'}"


def test_rate_of_original_weights(tmp_path):
    lottery = Lottery.open(fast_config("prune.rate=0.1", "prune.rate_of=original", "prune.rates={}",
                                       "lottery.levels=3", "lottery.baselines=[]", "train.steps=20it"), tmp_path)
    lottery.run()
    densities = [Masks.load(lottery.store.level(i) / "masks.safetensors").density() for i in range(4)]
    assert densities == pytest.approx([1.0, 0.9, 0.8, 0.7], abs=2e-4)
