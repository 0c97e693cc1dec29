"""Plugins for the CLI (docs/plugins.md): `--import MODULE` before or after the subcommand, `imports:` in a YAML
config, and entry points of group "ticketlab.plugins" register models, data sets, criteria and baselines before a
config is read; `ticketlab models` and `data list` say where each entry comes from. A missing module, one that raises
and an entry point that raises are one line, exit status 2, nothing written."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ticketlab import cli, plugins
from ticketlab.core.criteria import CRITERIA
from ticketlab.data import DATASETS
from ticketlab.engine.baselines import BASELINES
from ticketlab.models import MODELS

from .conftest import assert_user_error

# A user's module: one model, one data set, one criterion and one baseline, each registered by its decorator.
PLUGIN = '''
"""A user's plugin module."""
from dataclasses import replace

import torch
from torch import nn

from ticketlab.core.criteria import CRITERIA
from ticketlab.core.pruning import random_like
from ticketlab.data import DATASETS, InMemory, Source
from ticketlab.engine.baselines import BASELINES
from ticketlab.models import MODELS


@MODELS.register("plugin-mlp", input_shape=(8,), num_classes=3)
def plugin_mlp(num_classes, hidden=16):
    "A plugin's two-layer MLP."
    return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


@DATASETS.register("plugin-blobs")
def plugin_blobs(root):
    "Three Gaussian blobs in 8 dimensions, generated."
    y = torch.arange(600) % 3
    x = torch.randn(600, 8, generator=torch.Generator().manual_seed(0)) + 3.0 * nn.functional.one_hot(y, 8).float()
    return Source(train=InMemory(x[:480], y[:480]), test=InMemory(x[480:], y[480:]), num_classes=3, val_size=60)


@CRITERIA.register("plugin-largest")
def largest_first(weight, mask, generator):
    "The largest weights go first."
    w = weight.detach().abs()
    return w.max() - w


@BASELINES.register("plugin-global")
def random_global(imp, run):
    "IMP's start weights, its kept count spread uniformly over all tensors."
    return replace(imp, masks=random_like(imp.masks, seed=run.cfg.seeds.prune + imp.level, per_tensor=False))
'''

SETTINGS = ["model.name=plugin-mlp", "data.name=plugin-blobs", "data.batch_size=32", "train.steps=20it",
            "train.lr=0.01", "train.eval_every=10it", "train.checkpoint_every=20it", "lottery.levels=1",
            "prune.criterion=plugin-largest", "lottery.baselines=[plugin-global]"]
RUN = [*(x for s in SETTINGS for x in ("--set", s)), "--runs-dir", "runs", "--quiet"]


def write_module(folder, name: str, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(text))
    return folder


def write_entry_point(folder, value: str, dist: str = "tl-fake-plugin"):
    """A minimal installed package: `<dist>-1.0.dist-info` with METADATA and entry_points.txt, as pip leaves it."""
    info = folder / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\nfake = {value}\n")


def cli_in(cwd, *args, pythonpath=None, env=None, timeout=300):
    """The real `ticketlab` command in a subprocess, with `pythonpath` where the user's modules are."""
    environment = {**os.environ, **(env or {})}
    environment.pop(plugins.DISABLE_ENV, None)
    if pythonpath:
        environment["PYTHONPATH"] = os.pathsep.join([str(pythonpath), environment.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "ticketlab.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=environment, timeout=timeout)


@pytest.fixture
def scratch(monkeypatch, tmp_path):
    """In-process CLI calls: registrations, imported modules and the plugin record are undone afterwards."""
    for registry in (MODELS, DATASETS, CRITERIA, BASELINES):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    for name in ("_imported", "_packages", "_entry_points_done"):
        monkeypatch.setattr(plugins, name, type(getattr(plugins, name))())
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    modules = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


# ---- the acceptance test: a module written here trains from the CLI ------------------------------------------------
def test_run_import_trains_the_modules_model_on_its_data_with_its_criterion_and_baseline(tmp_path):
    folder = write_module(tmp_path / "mine", "tl_plugin", PLUGIN)
    result = cli_in(tmp_path, "run", "--import", "tl_plugin", *RUN, pythonpath=folder)
    assert result.returncode == 0, result.stderr
    [run] = (tmp_path / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["model"]["name"] == "plugin-mlp" and config["data"]["name"] == "plugin-blobs"
    assert "imports" not in config  # a loading instruction, not a setting
    imp = json.loads((run / "level_01" / "summary.json").read_text())
    baseline = json.loads((run / "level_01" / "baselines" / "plugin-global" / "summary.json").read_text())
    assert imp["status"] == baseline["status"] == "done" and imp["steps"] == 20
    assert imp["density"] == pytest.approx(0.8, abs=0.01)
    dense = json.loads((run / "level_00" / "summary.json").read_text())
    assert dense["final_test_acc"] > 0.8  # it learnt the blobs (chance: 1/3)
    assert "dense (level 0)" in result.stdout and "plugin-global (level 1)" in result.stdout  # the results table


def test_a_sweep_files_imports_reach_its_workers(tmp_path):
    write_module(tmp_path, "tl_sweep_plugin", PLUGIN)  # in the driver's directory, where its workers start
    (tmp_path / "sweep.yaml").write_text(
        "imports: [tl_sweep_plugin]\nworkers: 1\ngrid: {seeds: [0, 1]}\n"
        "set: {model.name: plugin-mlp, data.name: plugin-blobs, train.steps: 10it, train.eval_every: 10it, "
        "lottery.levels: 1, lottery.baselines: []}\n")
    result = cli_in(tmp_path, "sweep", "sweep.yaml", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 of 2 runs done, 0 failed" in result.stdout
    assert len(list((tmp_path / "sweeps" / "sweep" / "runs").glob("plugin-mlp-plugin-blobs-*/level_01"))) == 2


# ---- where the names come from -------------------------------------------------------------------------------------
def test_yaml_imports_load_before_the_config_is_built_and_are_no_setting(scratch):
    from ticketlab.commands.run import configs

    write_module(scratch, "tl_yaml_plugin", PLUGIN)  # in the current directory, not on sys.path
    (scratch / "run.yaml").write_text("imports: [tl_yaml_plugin]\nmodel: {name: plugin-mlp}\n"
                                      "data: {name: plugin-blobs}\nprune: {criterion: plugin-largest}\n")
    [cfg] = configs(cli.build_parser(["run"]).parse_args(["run", "--config", "run.yaml"]))
    assert (cfg.model.name, cfg.data.name, cfg.prune.criterion) == ("plugin-mlp", "plugin-blobs", "plugin-largest")
    assert plugins.imported() == ["tl_yaml_plugin"]


@pytest.mark.parametrize("argv", [
    ["--import", "tl_listed", "models", "lenet300", "plugin-mlp"],  # a global option before the subcommand
    ["models", "lenet300", "plugin-mlp", "--import=tl_listed"],  # or after it
])
def test_models_lists_a_plugins_model_with_its_module(scratch, capsys, argv):
    write_module(scratch, "tl_listed", PLUGIN)
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "parameters", "prunable", "input", "classes", "source", "description"]
    assert lines[1].split()[:7] == ["lenet300", "266,610", "266,200", "1x28x28", "10", "built-in", "LeNet-300-100"]
    assert lines[2].split()[:6] == ["plugin-mlp", "195", "176", "8", "3", "tl_listed"]


def test_data_list_shows_the_plugin_after_a_nested_subcommand(scratch, capsys):
    write_module(scratch, "tl_data", PLUGIN)
    assert cli.main(["data", "list", "--import", "tl_data"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("plugin-blobs "))
    assert "plugin tl_data" in row and "Three Gaussian blobs" in row


def test_an_entry_point_registers_and_is_listed_with_its_package(scratch, capsys, monkeypatch):
    write_module(scratch / "site", "tl_ep_plugin", PLUGIN + "\ncalls = []\n\ndef register():\n    calls.append(1)\n")
    write_entry_point(scratch / "site", "tl_ep_plugin:register")
    monkeypatch.syspath_prepend(str(scratch / "site"))
    assert cli.main(["models", "plugin-mlp"]) == 0
    assert cli.main(["data", "list"]) == 0  # a second command in the process: the callable ran once
    out = capsys.readouterr().out
    assert "tl_ep_plugin (package tl-fake-plugin 1.0)" in out and sys.modules["tl_ep_plugin"].calls == [1]
    assert "plugin tl_ep_plugin (package tl-fake-plugin 1.0)" in out


def test_installed_plugins_can_be_switched_off(scratch, capsys, monkeypatch):
    write_module(scratch / "site", "tl_ep_broken", "raise RuntimeError('broken on import')\n")
    write_entry_point(scratch / "site", "tl_ep_broken")
    monkeypatch.syspath_prepend(str(scratch / "site"))
    monkeypatch.setenv(plugins.DISABLE_ENV, "1")
    assert cli.main(["models", "lenet300"]) == 0 and "tl_ep_broken" not in sys.modules


# ---- bad input: one line, exit 2, nothing written ------------------------------------------------------------------
def test_a_missing_module_is_one_line_and_nothing_is_written(tmp_path):
    result = cli_in(tmp_path, "run", "mlp-digits", "--import", "tl_no_such_module", "--runs-dir", "runs")
    assert_user_error(result, "--import 'tl_no_such_module': no module named 'tl_no_such_module'", "PYTHONPATH")
    assert not (tmp_path / "runs").exists()


def test_a_plugin_model_whose_forward_fails_is_one_line_before_anything_is_written(tmp_path):
    broken = PLUGIN.replace('return nn.Sequential(nn.Linear(8, hidden)', 'return nn.Sequential(nn.Linear(7, hidden)')
    folder = write_module(tmp_path / "mine", "tl_broken_forward", broken)
    result = cli_in(tmp_path, "run", "--import", "tl_broken_forward", *RUN, pythonpath=folder)
    assert_user_error(result, "the model's forward or the loss failed on a training batch: RuntimeError")
    assert not (tmp_path / "runs").exists()


def test_an_entry_point_that_raises_is_one_line_naming_it(tmp_path):
    write_module(tmp_path / "site", "tl_ep_raises", "def register():\n    raise ValueError('no GPU here')\n")
    write_entry_point(tmp_path / "site", "tl_ep_raises:register", dist="tl-raising")
    result = cli_in(tmp_path, "models", "lenet300", pythonpath=tmp_path / "site")
    assert_user_error(result, "plugin entry point 'fake = tl_ep_raises:register' of package tl-raising 1.0 failed: "
                              "ValueError: no GPU here (at ", "tl_ep_raises.py:2)", plugins.DISABLE_ENV)
    assert result.stdout == ""


@pytest.mark.parametrize("module,text,needles", [
    ("tl_raises", "import torch\n\nraise RuntimeError('needs a licence file')\n",
     ["--import 'tl_raises' failed: RuntimeError: needs a licence file (at ", "tl_raises.py:3)"]),
    ("tl_needs_dep", "import tl_missing_dependency\n",
     ["--import 'tl_needs_dep' failed: ModuleNotFoundError: No module named 'tl_missing_dependency'"]),
    ("tl_bad_syntax", "def broken(:\n", ["--import 'tl_bad_syntax' failed: SyntaxError: ", "tl_bad_syntax.py:1)"]),
    ("tl_replaces", "from ticketlab.data import DATASETS\n\nDATASETS.register('mnist-mini')(lambda root: None)\n",
     ["--import 'tl_replaces' failed: dataset 'mnist-mini' is already registered; pass replace=True"]),
    ("tl_replaces_model", "from ticketlab.models import MODELS\n\n"
                          "MODELS.register('lenet300', input_shape=(4,), num_classes=2)(lambda num_classes: None)\n",
     ["--import 'tl_replaces_model' failed: model 'lenet300' is already registered"]),
])
def test_a_module_that_fails_is_one_line_naming_it_and_the_cause(scratch, capsys, module, text, needles):
    write_module(scratch, module, text)
    assert cli.main(["run", "mlp-digits", "--import", module, "--runs-dir", "runs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ticketlab: error: ")
    assert all(needle in err for needle in needles), err
    assert not (scratch / "runs").exists()


@pytest.mark.parametrize("value,needle", [
    ("./my_models.py", "--import './my_models.py' is a file, not a module name: give 'my_models' and run from '.'"),
    ("my-models", "--import 'my-models' is not a module name: give my_package.my_module"),
])
def test_a_path_or_a_bad_name_says_what_to_give(scratch, capsys, value, needle):
    assert cli.main(["models", "--import", value]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("value", ["tl_plugin", "{a: 1}", "[1, 2]"])
def test_yaml_imports_that_are_not_a_list_of_names_are_refused(scratch, capsys, value):
    (scratch / "run.yaml").write_text(f"imports: {value}\n")
    assert cli.main(["run", "--config", "run.yaml", "--runs-dir", "runs"]) == 2
    assert "imports in run.yaml must be a list of module names, written [my_package.models]" in capsys.readouterr().err
    assert not (scratch / "runs").exists()


def test_torchrun_ranks_get_the_imported_modules(scratch):
    from ticketlab.commands.run import worker_argv

    write_module(scratch, "tl_rank_plugin", PLUGIN)
    args = cli.build_parser(["run"]).parse_args(["run", "--import", "tl_rank_plugin", "--nproc", "2"])
    plugins.import_modules(cli.requested_imports(args))
    assert worker_argv(args)[:3] == ["--import", "tl_rank_plugin", "run"]
