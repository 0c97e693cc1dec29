"""Full disks, read-only mounts (a fault-injecting writer, no tmpfs needed), corrupt checkpoints and summaries, and
masks that do not fit: one TicketlabError line, nothing half-written, and a resumed run ends as an uninterrupted one."""

import errno
import json
import os
import subprocess
import sys

import pytest
import torch

import ticketlab.core.files as files
from ticketlab.core.files import save_tensors, write_bytes_atomic
from ticketlab.core.masks import Masks
from ticketlab.engine.checkpoint import save_checkpoint, vet
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.store import append_metrics, is_done, read_metrics, run_lock
from ticketlab.errors import TicketlabError

from .conftest import comparable
from .test_torture_files import copy_run, fast_config, reference, snapshot  # noqa: F401 - the fixture

KIND = {errno.ENOSPC: "no space left", errno.EROFS: "read-only"}


def failing(code: int, after: int = 0):
    """A stand-in for os.replace that works `after` times, then raises OSError(code)."""
    calls = {"n": 0}
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(code, os.strerror(code))
        return real(src, dst, *args, **kwargs)

    return replace


def one_line(error: TicketlabError, *needles) -> None:
    assert "\n" not in str(error)
    for needle in needles:
        assert needle in str(error), (needle, str(error))


def no_temporaries(root) -> None:
    assert not [p for p in root.rglob("*.tmp")], "a failed atomic write left its temporary file"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
@pytest.mark.parametrize("where", ["fsync", "replace", "mkstemp"])
def test_atomic_write_fails_cleanly(tmp_path, monkeypatch, code, where):
    target = tmp_path / "a.json"
    target.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr({"fsync": os, "replace": os, "mkstemp": files.tempfile}[where], where, boom)
    with pytest.raises(TicketlabError) as e:
        write_bytes_atomic(target, b"new")
    one_line(e.value, str(target), KIND[code])
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_append_on_a_full_disk_leaves_no_torn_line(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_metrics(path, {"step": 0})

    class Full:
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:5])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: Full(real_open(*a, **k)))
    with pytest.raises(TicketlabError) as e:
        append_metrics(path, {"step": 1})
    monkeypatch.undo()
    one_line(e.value, "no space left")
    assert read_metrics(path) == [{"step": 0}] and path.read_text().endswith("\n")


def test_lock_on_a_read_only_directory(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", boom)
    with pytest.raises(TicketlabError) as e, run_lock(tmp_path / "run"):
        pass
    one_line(e.value, ".lock", "read-only")


@pytest.mark.parametrize("after", [0, 3, 9])
def test_full_disk_mid_run_then_resume_gives_the_same_results(reference, tmp_path, monkeypatch, after):  # noqa: F811
    monkeypatch.setattr(os, "replace", failing(errno.ENOSPC, after))
    with pytest.raises(TicketlabError) as e:
        Lottery.open(fast_config(), tmp_path).run()
    one_line(e.value, "no space left", "free some space")
    monkeypatch.undo()
    no_temporaries(tmp_path)
    root = Lottery.open(fast_config(), tmp_path).run().root
    assert comparable(root) == comparable(reference)


def test_report_and_export_on_a_full_disk_keep_the_old_files(reference, tmp_path, monkeypatch):  # noqa: F811
    from ticketlab.deploy.export import export_run
    from ticketlab.report import load_runs, write_report

    runs = load_runs([reference])
    out = tmp_path / "report"
    write_report(runs, out)
    before = snapshot(out)
    monkeypatch.setattr(os, "replace", failing(errno.ENOSPC, after=1))
    with pytest.raises(TicketlabError) as e:
        write_report(runs, out)
    one_line(e.value, "no space left")
    with pytest.raises(TicketlabError):
        export_run(reference, None, tmp_path / "x.safetensors")
    monkeypatch.undo()
    page = (out / "report.html").read_text()
    assert all((out / name).is_file() for name in __import__("re").findall(r'src="([^"]+)"', page))
    assert snapshot(out).keys() == before.keys() and not (tmp_path / "x.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---- corrupt checkpoints and summaries ------------------------------------------------------------------------------
def checkpoint_bytes(kind: str, lottery) -> bytes:
    model = lottery.weights(lottery.store.init_path)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    extra = {"step": 20, "loss_sum": 1.0, "loss_count": 20, "wall": 1.0}
    path = lottery.store.root / "ck.tmp.safetensors"
    if kind == "step-1e9":
        save_checkpoint(path, model, opt, {**extra, "step": 10**9})
    elif kind == "bad-extra":
        save_checkpoint(path, model, opt, {"step": "x"})
    elif kind in ("no-rng", "wrong-shape"):
        state = {f"model.{k}": v for k, v in model.state_dict().items()}
        if kind == "wrong-shape":  # else no RNG state
            state = {**state, "model.0.weight": torch.zeros(3, 3), "rng.torch": torch.get_rng_state()}
        save_tensors(path, state, {"extra": json.dumps(extra), "optimizer": "{}"})
    else:
        save_checkpoint(path, model, opt, extra)
    data = path.read_bytes()
    path.unlink()
    return {"empty": b"", "truncated": data[: len(data) // 2]}.get(kind, data)


@pytest.mark.parametrize("kind", ["empty", "truncated", "no-rng", "wrong-shape", "bad-extra", "step-1e9"])
def test_corrupt_checkpoint_is_quarantined_and_the_stage_retrains(reference, tmp_path, capfd, kind):  # noqa: F811
    run = copy_run(reference, tmp_path)
    lottery = Lottery.open(fast_config(), run.parent)
    stage = run / "level_01" / "baselines" / "random_reinit"
    (stage / "summary.json").unlink()
    (stage / "checkpoint.safetensors").write_bytes(checkpoint_bytes(kind, lottery))
    capfd.readouterr()
    lottery.run()
    err = capfd.readouterr().err
    assert err.count("corrupt checkpoint") == 1 and "checkpoint.corrupt-1.safetensors" in err
    assert (stage / "checkpoint.corrupt-1.safetensors").is_file()
    (stage / "checkpoint.corrupt-1.safetensors").unlink()
    assert comparable(run) == comparable(reference)


def test_a_sound_checkpoint_is_kept(reference, tmp_path):  # noqa: F811
    lottery = Lottery.open(fast_config(), copy_run(reference, tmp_path).parent)
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(checkpoint_bytes("sound", lottery))
    assert vet(path, lottery.fresh_model(0), lottery.plan()) and path.is_file()


@pytest.mark.parametrize("summary", [b"{}", b'{"level": 1, "kind": "imp", "status": "done", "density": "abc"}',
                                     b"\xff", b"null"])
def test_corrupt_summary_is_not_done_and_the_stage_retrains(reference, tmp_path, summary):  # noqa: F811
    run = copy_run(reference, tmp_path)
    (run / "level_01" / "summary.json").write_bytes(summary)
    assert not is_done(run / "level_01")
    Lottery.open(fast_config(), run.parent).run()
    assert comparable(run) == comparable(reference)


def test_wrong_shape_masks_fail_before_any_baseline_masks_are_written(reference, tmp_path):  # noqa: F811
    run = copy_run(reference, tmp_path)
    for summary in run.glob("level_01/**/summary.json"):
        summary.unlink()
    Masks({"0.weight": torch.ones(3, 3, dtype=torch.bool)}).save(run / "level_01" / "masks.safetensors")
    before = snapshot(run)
    with pytest.raises(TicketlabError) as e:
        Lottery.open(fast_config(), run.parent).run()
    one_line(e.value, "masks.safetensors", "does not fit the model")
    assert snapshot(run) == before


# ---- permissions and byte-identical files ---------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_respect_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_bytes_atomic(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~mask


def test_identical_saves_give_identical_bytes(tmp_path):
    code = ("import sys, torch; from ticketlab.core.files import save_tensors; "
            "save_tensors(sys.argv[1], {'b': torch.ones(2), 'a': torch.zeros(3)}, "
            "{k: k * 2 for k in 'qwertyuiop'})")
    for i in range(2):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{i}.st")], check=True)
    assert (tmp_path / "0.st").read_bytes() == (tmp_path / "1.st").read_bytes()
