"""The base install (`pip install ticketlab`, no extras) prunes, counts and trains; a feature whose extra is missing
says which extra to install. Checked in a subprocess where the optional packages cannot be imported, so CI keeps it
true without building a virtualenv (done by hand once: a fresh venv, `pip install -c constraints.txt .`)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
OPTIONAL = ("matplotlib", "numba", "sklearn", "mlxtend", "mnist1d", "transformers", "tokenizers", "accelerate", "ray",
            "ninja", "scipy", "torch_pruning", "onnx", "onnxruntime", "lightning", "tensorboard", "rich")

LEAN = """
import sys
from importlib.machinery import PathFinder

OPTIONAL = set(sys.argv[1].split(","))


class NotInstalled(PathFinder):  # the optional packages are not found, as where they are not installed
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.partition(".")[0] in OPTIONAL else super().find_spec(name, path, target)


sys.meta_path[sys.meta_path.index(PathFinder)] = NotInstalled

import json
import torch
from torch import nn

import ticketlab
from ticketlab import Masks, PruneSpec, TicketlabError, count, prune

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
masks = prune(model, Masks.ones(model), PruneSpec(rate=0.5))
masks.apply(model)
counts = count(model, masks, example_input=torch.randn(2, 20))
out = {"kept": counts.kept, "params": counts.params, "errors": {}}

from ticketlab.accel import select
from ticketlab.data import InMemory, Splits
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.schedule import make_plan
from ticketlab.engine.training import train

x = torch.randn(60, 20)
y = x[:, :4].argmax(1)
splits = Splits(InMemory(x[:40], y[:40]), InMemory(x[40:50], y[40:50]), InMemory(x[50:], y[50:]), num_classes=4,
                input_shape=(20,), name="lean")
cfg = TrainConfig(steps="20it", optimizer="adam", lr=1e-2, eval_every="10it")
train(model, masks, splits, cfg, make_plan(cfg, 40, 8, 0), __import__("pathlib").Path(sys.argv[2]),
      accelerator=select())
params = dict(model.named_parameters())
out["pruned_nonzero"] = sum(int((params[n][~m] != 0).sum()) for n, m in masks.items())

def error(fn):
    try:
        fn()
    except TicketlabError as e:
        return str(e)
    return None

out["errors"]["figures"] = error(lambda: __import__("ticketlab.report.figures"))
out["errors"]["theory plots"] = error(lambda: __import__("ticketlab.paper.theory.plots"))
out["errors"]["digits"] = error(lambda: ticketlab.load_dataset("digits"))
out["errors"]["mnist-mini"] = error(lambda: ticketlab.load_dataset("mnist-mini"))
out["errors"]["mnist1d"] = error(lambda: ticketlab.load_dataset("mnist1d"))
out["loaded"] = sorted(m for m in sys.modules if m.partition(".")[0] in OPTIONAL)
print(json.dumps(out))
"""


def test_the_base_install_prunes_counts_and_trains_without_the_extras(tmp_path):
    env = {**os.environ, "TICKETLAB_NO_COMPILE": "1", "TICKETLAB_CACHE": str(tmp_path / "cache"),
           "TICKETLAB_DATA": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", LEAN, ",".join(OPTIONAL), str(tmp_path / "stage")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    weights, biases = 20 * 16 + 16 * 4, 16 + 4
    assert out["params"] == weights + biases and out["kept"] == weights // 2 + biases  # rate 0.5, biases not pruned
    assert out["pruned_nonzero"] == 0 and out["loaded"] == []
    extra = {"figures": "plot", "theory plots": "plot", "digits": "data", "mnist-mini": "data", "mnist1d": "data"}
    for feature, name in extra.items():
        message = out["errors"][feature]
        assert message is not None and message.endswith(f"pip install 'ticketlab[{name}]'"), (feature, message)
        assert "\n" not in message


def test_the_base_dependencies_are_the_core_ones_and_each_optional_package_has_an_extra():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda specs: {s.split(">")[0].split("=")[0].split("[")[0].strip().lower() for s in specs}  # noqa: E731
    assert names(project["dependencies"]) == {"torch", "numpy", "safetensors", "pyyaml", "tqdm"}
    extras = project["optional-dependencies"]
    declared = set().union(*(names(v) for v in extras.values()))
    imported = {"sklearn": "scikit-learn", "torch_pruning": "torch-pruning"}
    assert {imported.get(m, m) for m in OPTIONAL if m != "rich"} <= declared and "rich" not in declared
    (bundle,) = extras["all"]
    assert set(re.search(r"\[(.*)\]", bundle)[1].split(",")) == set(extras) - {"all", "dev"}  # `all` is every extra
    assert "'.[dev,all]'" in (ROOT / "Makefile").read_text()  # make demo / make test install them all
