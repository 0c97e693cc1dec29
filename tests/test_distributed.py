"""Data-parallel IMP (`ticketlab run --nproc 2`, gloo on CPU): the same masks as one process, kill -9 of the launcher
and a dying rank both resume exactly, pruned gradients are zero on every rank, masks that differ across ranks are
refused."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ticketlab.core.files import load_tensors
from ticketlab.core.masks import Masks
from ticketlab.engine.distributed import check_nproc, free_port
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.presets import build_config
from ticketlab.errors import TicketlabError

from .conftest import assert_user_error, main_in_process
from .test_lottery import comparable

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; uses PR_SET_PDEATHSIG")

# SGD keeps float-order differences (~1e-7) far below the gaps between weight magnitudes, so pruning cannot flip;
# 45 steps cross the epoch boundary at 40, where the short last batch (9 rows) splits 5 / 4 over the ranks.
FAST = ["train.steps=45it", "train.eval_every=15it", "train.checkpoint_every=5it", "lottery.levels=2",
        "train.optimizer=sgd", "train.lr=0.05", "lottery.baselines=[random_pruning]"]


def ddp_command(runs_dir: Path, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "ticketlab.cli", "run", "mlp-digits", "--nproc", str(nproc), "--runs-dir",
            str(runs_dir), "--quiet", *[x for s in FAST for x in ("--set", s)]]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("ddp")
    done = subprocess.run(ddp_command(runs), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("run finished") == 1  # rank 0 speaks, the other ranks do not
    return next(runs.iterdir())


def test_two_ranks_give_the_masks_of_one_process_with_the_same_global_batch(ddp_run, tmp_path):
    single = Lottery.open(build_config("mlp-digits", overrides=FAST), tmp_path).run().root
    assert single.name == ddp_run.name  # same config, same run directory name
    mask_files = sorted(p.relative_to(single) for p in single.rglob("masks.safetensors"))
    assert len(mask_files) == 5  # levels 0-2 and the random-pruning baselines of levels 1 and 2
    for rel in mask_files:
        assert Masks.load(ddp_run / rel) == Masks.load(single / rel), rel
    assert Masks.load(single / "level_02" / "masks.safetensors").density() < 0.7
    for rel in sorted(p.relative_to(single) for p in single.rglob("final.safetensors")):
        mine, theirs = load_tensors(ddp_run / rel)[0], load_tensors(single / rel)[0]
        for name, t in theirs.items():  # the same updates up to float summation order
            torch.testing.assert_close(mine[name], t, rtol=0, atol=1e-5)
    # Pruned weights are exactly zero after DDP training too (gradients all-reduced, then masked).
    masks, final = Masks.load(ddp_run / "level_02" / "masks.safetensors"), load_tensors(ddp_run / "level_02" /
                                                                                       "final.safetensors")[0]
    assert all((final[name][~m] == 0).all() for name, m in masks.items())
    assert not list(ddp_run.rglob("checkpoint*.safetensors"))


def processes_of(runs_dir: Path) -> dict[int, str]:
    """pid -> RANK (or '' for the launcher) of the live processes whose command line names `runs_dir`."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(runs_dir).encode() in (proc / "cmdline").read_bytes().split(b"\0"):
                env = dict(v.split(b"=", 1) for v in (proc / "environ").read_bytes().split(b"\0") if b"=" in v)
                if (proc / "stat").read_text().split()[2] != "Z":
                    found[int(proc.name)] = env.get(b"RANK", b"").decode()
        except OSError:  # gone meanwhile
            continue
    return found


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_dying_rank_and_kill_9_of_the_launcher_both_resume_exactly(ddp_run, tmp_path):
    args = ddp_command(tmp_path)
    # 1. Rank 1 dies mid level 0: the command stops with one line, no hang, no orphan.
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / ddp_run.name
    wait_for(lambda: (run_dir / "level_00" / "checkpoint.safetensors").exists())
    rank1 = [pid for pid, rank in processes_of(tmp_path).items() if rank == "1"]
    assert len(rank1) == 1
    os.kill(rank1[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert_user_error(subprocess.CompletedProcess(args, proc.returncode, "", stderr),
                      "rank 1 died (killed by SIGKILL); rerun the same command to resume from the last checkpoint")
    assert processes_of(tmp_path) == {}
    # 2. kill -9 of the launcher's process group mid level 1: its ranks (in sessions of their own) die with it.
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: (run_dir / "level_01" / "checkpoint.safetensors").exists())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: processes_of(tmp_path) == {}, timeout=10)
    # 3. The same command resumes from the last checkpoint and ends with the uninterrupted run's numbers.
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert comparable(run_dir) == comparable(ddp_run)


RANKS_SCRIPT = textwrap.dedent("""
    import sys, torch
    from ticketlab.engine import distributed
    from ticketlab.errors import TicketlabError
    from ticketlab.core.masks import Masks
    distributed.init(torch.device("cpu"))
    me = distributed.rank()
    mine = Masks({"w": torch.arange(20).reshape(4, 5) % (2 + me) == 0})
    got = distributed.from_rank_zero(lambda: mine)  # rank 0's masks on every rank
    assert got == Masks({"w": torch.arange(20).reshape(4, 5) % 2 == 0}), me
    distributed.check_same_masks(got, "level 1 imp")  # the same: passes
    # Pruned gradients are zero on every rank after DDP's all-reduce (ranks see different data), kept ones agree.
    from ticketlab.core.masked_update import MaskedUpdate
    torch.manual_seed(0)
    model, keep = torch.nn.Linear(5, 4), Masks({"weight": torch.arange(20).reshape(4, 5) % 3 != 0})
    keep.apply(model)
    update = MaskedUpdate.for_model(model, keep)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(me))
    ddp = distributed.wrap(model)  # held: its reducer all-reduces during backward
    distributed.shard_loss(ddp(x), torch.arange(6) % 4, 12).backward()
    update.before_step()
    grad = model.weight.grad
    assert (grad[~keep["weight"]] == 0).all() and (grad[keep["weight"]] != 0).all()
    both = [torch.empty_like(grad) for _ in range(2)]
    torch.distributed.all_gather(both, grad)
    assert torch.equal(both[0], both[1])
    try:
        distributed.check_same_masks(mine, "level 1 imp")
    except TicketlabError as e:
        print(e)
        del ddp  # as the worker does: leave the group cleanly, then end the process at once (`leave`)
        distributed.barrier()
        distributed.shutdown()
        distributed.leave(2)
""")


def test_masks_that_differ_across_ranks_are_refused():
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-c", RANKS_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}) for r in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 2, err
        lines = out.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("masks of level 1 imp differ across ranks (rank 0 sha256 ")


def test_bad_nproc_inputs(tmp_path, capsys):
    # through `run`'s main() in this process: the launcher's real command line ends in one line above (a dying rank)
    assert_user_error(main_in_process(capsys, "run", "mlp-digits", "--nproc", "3", "--runs-dir", tmp_path),
                      "data.batch_size 32 does not split over 3 processes; choose a multiple of 3")
    assert not any(tmp_path.iterdir())  # refused before anything ran
    with pytest.raises(TicketlabError, match="--nproc 0 must be a positive number"):
        check_nproc(0, 32, torch.device("cpu"))
    with pytest.raises(TicketlabError, match="train.device cuda:1 names one GPU for 2 processes"):
        check_nproc(2, 32, torch.device("cuda:1"))


CHECKPOINT_SCRIPT = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from ticketlab.engine import distributed
    from ticketlab.engine.checkpoint import load_checkpoint
    distributed.init(torch.device("cpu"))
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sound, corrupt = Path(sys.argv[1]) / "sound.safetensors", Path(sys.argv[1]) / "checkpoint.safetensors"
    print(load_checkpoint(sound, model, opt)["step"], load_checkpoint(corrupt, model, opt))
    distributed.shutdown()
""")


def test_a_corrupt_checkpoint_is_judged_by_every_rank_and_moved_aside_by_rank_zero(tmp_path):
    from ticketlab.engine.checkpoint import save_checkpoint

    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path / "sound.safetensors", model, torch.optim.SGD(model.parameters(), lr=0.1),
                    {"step": 7, "loss_sum": 1.0, "loss_count": 7, "wall": 0.0})
    (tmp_path / "checkpoint.safetensors").write_bytes(b"\x10\0\0\0")  # truncated
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-c", CHECKPOINT_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}) for r in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.split() == ["7", "None"]  # every rank resumes the sound one and restarts from the corrupt one
    assert sum(err.count("corrupt checkpoint") for _, err in outs) == 1 and "corrupt checkpoint" in outs[0][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.corrupt-1.safetensors", "sound.safetensors"]
