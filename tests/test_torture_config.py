"""Bad input at the config / CLI boundary: every case through the real `ticketlab` command, each ending with exit
status 2, one line on stderr, no traceback, and no file written or changed (an existing run directory stays
byte-identical). The cases share one subprocess (a driver calling `ticketlab.cli.main` per case), so ~50 cases cost
about one start-up; what trains (divergence, collapse, runaway) has its own tests below."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ticketlab.cli import main

from .conftest import assert_user_error, run_clis

QUICK = ["run", "mlp-digits", "--runs-dir", "runs", "--quiet", "--set", "train.steps=2it"]

# (id, argv after QUICK (or a whole argv when it starts with a subcommand other than "run"), text the line must hold)
CASES = [
    ("lr-nan", ["--set", "train.lr=.nan"], "train.lr must be a finite number"),
    ("lr-nan-word", ["--set", "train.lr=nan"], "train.lr must be a finite number"),
    ("lr-inf", ["--set", "train.lr=.inf"], "train.lr must be a finite number"),
    ("lr-overflow", ["--set", "train.lr=1e400"], "train.lr must be a finite number"),
    ("lr-negative", ["--set", "train.lr=-1"], "train.lr must be > 0"),
    ("lr-zero", ["--set", "train.lr=0"], "train.lr must be > 0"),
    ("lr-text", ["--set", "train.lr=fast"], "train.lr must be float"),
    ("weight-decay-nan", ["--set", "train.weight_decay=nan"], "train.weight_decay must be a finite number"),
    ("weight-decay-negative", ["--set", "train.weight_decay=-0.1"], "train.weight_decay must be >= 0"),
    ("sgd-momentum-negative", ["--set", "train.optimizer=sgd", "--set", "train.momentum=-1"],
     "train.momentum must be in [0, 1)"),
    ("momentum-above-one", ["--set", "train.momentum=1.5"], "train.momentum must be in [0, 1)"),
    ("gamma-zero", ["--set", "train.gamma=0"], "train.gamma must be > 0"),
    ("steps-zero", ["--set", "train.steps=0it"], "train.steps '0it' is no step at all"),
    ("eval-every-zero", ["--set", "train.eval_every=0ep"], "train.eval_every '0ep' is no step at all"),
    ("checkpoint-every-zero", ["--set", "train.checkpoint_every=0it"], "train.checkpoint_every '0it' is no step"),
    ("seeds-huge", ["--seeds", "99999999999999999999"], "seeds.init must be >= 0 and <= 2147483647"),
    ("seeds-negative", ["--seeds", "-1"], "seeds.init must be >= 0"),
    ("seed-2-31", ["--set", "seeds.data=2147483648"], "seeds.data must be >= 0 and <= 2147483647"),
    ("seed-float", ["--set", "seeds.prune=1.5"], "seeds.prune must be int"),
    ("batch-size-zero", ["--set", "data.batch_size=0"], "data.batch_size must be >= 1"),
    ("batch-size-huge", ["--set", "data.batch_size=99999999999999999999"], "data.batch_size must be >= 1 and <="),
    ("val-size-negative", ["--set", "data.val_size=-1"], "val size -1 for dataset 'digits' must be an integer in 0.."),
    ("val-size-whole-train", ["--set", "data.val_size=5000"], "val size 5000"),
    ("val-size-float", ["--set", "data.val_size=0.1"], "data.val_size must be int"),
    ("batch-tickets-zero", ["--batch-tickets", "0"], "train.batch_tickets must be >= 1"),
    ("levels-negative", ["--set", "lottery.levels=-1"], "lottery.levels must be >= 0"),
    ("steps-bare-number", ["--set", "train.steps=300"], "'300it'"),
    ("steps-huge", ["--set", "train.steps=99999999999999999999it"], "is too long"),
    ("steps-4300-digits", ["--set", f"train.steps={'9' * 5000}it"], "is too long"),
    ("steps-float", ["--set", "train.steps=1e3it"], "must look like '500it'"),
    ("milestones-bare", ["--set", "train.milestones=[300]"], "'300it'"),
    ("rewind-bare", ["--set", "lottery.rewind=500"], "'500it'"),
    ("rewind-beyond-training", ["--set", "lottery.rewind=500it"], "beyond the 2 training steps"),
    ("baselines-not-a-list", ["--set", "lottery.baselines=random_pruning"], "written [a, b]"),
    ("exclude-not-a-list", ["--set", "prune.exclude=fc1.weight"], "written [a, b]"),
    ("rates-not-a-mapping", ["--set", "prune.rates=[1]"], "written {name: value}"),
    ("rate-one", ["--set", "prune.rate=1"], "prune.rate must be in [0, 1)"),
    ("rate-nan", ["--set", "prune.rate=.nan"], "prune.rate must be a finite number"),
    ("rates-entry-two", ["--set", "prune.rates={fc1.weight: 2}"], "must be in [0, 1)"),
    ("target-density-zero", ["--set", "lottery.target_density=0"], "lottery.target_density must be in (0, 1]"),
    ("max-drop-negative", ["--set", "lottery.max_drop=-1"], "lottery.max_drop must be in [0, 1]"),
    ("min-density-one", ["--set", "prune.min_density=1"], "prune.min_density must be in [0, 1)"),
    ("bool-maybe", ["--set", "lottery.allow_collapse=maybe"], "lottery.allow_collapse must be true or false"),
    ("name-number", ["--set", "model.name=123"], "model.name must be str"),
    ("override-no-equals", ["--set", "train.lr"], "must look like section.key=value"),
    ("override-no-section", ["--set", "lr=0.1"], "must look like section.key=value"),
    ("override-three-parts", ["--set", "a.b.c=1"], "must look like section.key=value"),
    ("override-empty-key", ["--set", "train.=1"], "must look like section.key=value"),
    ("unknown-section", ["--set", "trian.lr=1"], "did you mean 'train'"),
    ("unknown-key", ["--set", "train.lrr=1"], "did you mean 'lr'"),
    ("override-newline", ["--set", "train.optimizer=a\nb"], "train.optimizer"),
    ("absent-device", ["--set", "train.device=cuda:7"], "train.device 'cuda:7' is absent"),
    ("fp16-on-cpu", ["--set", "train.device=cpu", "--set", "train.precision=fp16"], "fp16 needs a CUDA device"),
    ("unknown-dataset", ["--set", "data.name=nosuch"], "unknown dataset"),
    ("runs-dir-a-file", ["--runs-dir", "afile"], "is a file, not a directory"),
    ("runs-dir-under-a-file", ["--runs-dir", "afile/sub"], "is a file, not a directory"),
    ("config-a-list", ["--config", "list.yaml"], "must be a mapping of sections"),
    ("config-not-utf8", ["--config", "latin1.yaml"], "is not UTF-8 text"),
    ("config-self-alias", ["--config", "self.yaml"], "refers to itself through an alias"),
    ("config-a-directory", ["--config", "adir"], "is a directory"),
    ("config-billion-laughs", ["--config", "laughs.yaml"], "expands to more than 100,000 values"),
    ("config-missing", ["--config", "missing.yaml"], "config file not found"),
    ("config-nested-deeply", ["--config", "deep.yaml"], "config file deep.yaml"),
    ("config-bad-yaml", ["--config", "broken.yaml"], "is not valid YAML"),
    ("config-section-scalar", ["--config", "scalar-section.yaml"], "'train' is not a section"),
    ("nproc-zero", ["--nproc", "0"], "--nproc 0 must be a positive number"),
    ("demo-seeds-huge", ["demo", "--seeds", "99999999999999999999", "--runs-dir", "runs"], "seeds.init must be"),
    ("sweep-nan-lr", ["sweep", "--preset", "mlp-digits", "--grid", "train.lr=.nan,0.1", "--sweep-dir", "sw"],
     "train.lr must be a finite number"),
    ("sweep-nan-set", ["sweep", "--preset", "mlp-digits", "--set", "train.weight_decay=nan", "--grid", "seeds=0",
                       "--sweep-dir", "sw"], "train.weight_decay must be a finite number"),
    ("sweep-ray-cpus-nan", ["sweep", "--preset", "mlp-digits", "--grid", "seeds=0", "--executor", "ray",
                            "--ray-address", "h:1", "--ray-cpus", "nan", "--sweep-dir", "sw"], "ray.num_cpus"),
    ("sweep-file-laughs", ["sweep", "laughs.yaml", "--sweep-dir", "sw"], "expands to more than 100,000 values"),
    ("sweep-workers-zero", ["sweep", "--preset", "mlp-digits", "--grid", "seeds=0", "--workers", "0", "--sweep-dir",
                            "sw"], "sweep workers must be an integer >= 1"),
    ("sweep-grid-unknown-section", ["sweep", "--preset", "mlp-digits", "--grid", "nosuch.key=1", "--sweep-dir", "sw"],
     "unknown config section 'nosuch'"),
    # patterns that name no parameter: refused before level 0 trains, not when level 1 prunes
    ("exclude-matches-nothing", ["--set", "prune.exclude=[nosuch]"], "exclude pattern 'nosuch' matches no parameter"),
    ("rate-pattern-matches-nothing", ["--set", "prune.rates={nosuch.weight: 0.5}"], "rate pattern 'nosuch.weight'"),
    ("count-unknown-model", ["count", "nosuch"], "unknown model 'nosuch'"),
    ("count-seed-huge", ["count", "lenet300", "--seed", "99999999999999999999"], "below 2**63"),
    ("count-batch-zero", ["count", "lenet300", "--batch", "0"], "--batch must be a positive integer"),
    ("report-no-runs", ["report", "adir"], "holds none"),
    ("export-level-99", ["export", "RUN", "--level", "99", "--out", "x.st"], "has no level 99; levels: 0"),
    ("export-level-negative", ["export", "RUN", "--level", "-1", "--out", "x.st"], "has no level -1"),
    ("data-info-unknown", ["data", "info", "nosuch"], "unknown dataset 'nosuch'"),
]
WHOLE = ("demo", "sweep", "count", "report", "export", "data")  # argvs that are whole command lines


def laughs() -> str:
    """The 'billion laughs': 9 levels of 9 aliases each, 9**9 strings once expanded, 1 KB as written."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def write_inputs(root: Path) -> None:
    (root / "afile").write_text("not a directory\n")
    (root / "adir").mkdir()
    (root / "list.yaml").write_text("- a\n")
    (root / "latin1.yaml").write_bytes("train: {optimizer: 'adam\xe9'}\n".encode("latin-1"))
    (root / "self.yaml").write_text("a: &a [*a]\n")
    (root / "laughs.yaml").write_text(laughs())
    (root / "deep.yaml").write_text("train: " + "[" * 20000 + "]" * 20000 + "\n")
    (root / "broken.yaml").write_text("train: [\n")
    (root / "scalar-section.yaml").write_text("train: 5\n")


DRIVER = r"""
import contextlib, io, json, sys, traceback
from ticketlab.cli import main
out = []
for argv in json.loads(sys.stdin.read()):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        except BaseException:
            code = "raised"
            traceback.print_exc(file=err)
    out.append({"code": code, "stderr": err.getvalue()})
print(json.dumps(out))
"""


def tree(root: Path) -> dict[str, str]:
    """Every file and directory under `root`: its content's sha256 (files) or 'dir', with its mtime."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
                                       p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Each case's (exit code, stderr), with a real run directory present beforehand and the tree before and after."""
    root = tmp_path_factory.mktemp("torture")
    write_inputs(root)
    with pytest.MonkeyPatch.context() as mp:  # made by the command's main() in this process: a second start-up
        mp.chdir(root)  # of torch would only cost time (the cases below run in a real process of their own)
        assert main([*QUICK, "--set", "lottery.levels=0", "--set", "lottery.baselines=[]"]) == 0
    before = tree(root)
    run = str(next((root / "runs").iterdir()))
    argvs = [[run if a == "RUN" else a for a in argv] if argv[0] in WHOLE else [*QUICK, *argv] for _, argv, _ in CASES]
    done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(argvs), capture_output=True, text=True,
                          cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr
    return dict(zip([c[0] for c in CASES], json.loads(done.stdout), strict=True)), before, tree(root)


def test_there_are_enough_cases():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,needle", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(outcomes, name, needle):
    result = outcomes[0][name]
    assert result["code"] == 2, result
    assert_user_error(subprocess.CompletedProcess([], 2, "", result["stderr"]), needle)


def test_nothing_is_written_or_changed(outcomes):
    _, before, after = outcomes
    assert any(name.endswith("config.json") for name in before)  # the run directory made first is there
    assert after == before


def test_the_same_cases_through_the_real_command_line(tmp_path):
    """Two cases as separate processes: the driver's in-process calls behave as the command does."""
    write_inputs(tmp_path)
    nan, laughs = run_clis([*QUICK, "--set", "train.lr=.nan"], [*QUICK, "--config", "laughs.yaml"], cwd=tmp_path)
    assert_user_error(nan, "train.lr must be a finite number")
    assert_user_error(laughs, "expands to more than")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["afile", "adir", "list.yaml", "latin1.yaml", "self.yaml", "laughs.yaml", "deep.yaml", "broken.yaml",
         "scalar-section.yaml"])
