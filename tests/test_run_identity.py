"""A run directory is the run of one config and one model: another model or setting is refused, nothing overwritten."""

import json
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab.core.fingerprint import Fingerprint, fingerprint
from ticketlab.engine.config import Config
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.presets import build_config
from ticketlab.engine.store import RunStore
from ticketlab.errors import TicketlabError
from ticketlab.models import MODELS, build_model

from .conftest import assert_user_error

NAME = "identity-test-mlp"
TINY = ["train.steps=20it", "train.eval_every=10it", "train.checkpoint_every=10it", "lottery.levels=1",
        "lottery.baselines=[random_pruning]", f"model.name={NAME}"]
REGISTER = """
from ticketlab.models import MODELS
from ticketlab.models.mlp import MLP
@MODELS.register({name!r}, input_shape=(1, 8, 8), num_classes=10)
def net(num_classes, input_shape=(1, 8, 8)):
    return MLP(input_shape, ({width}, 16), num_classes)
"""


@contextmanager
def registered(width: int):
    """`NAME` as an MLP of hidden widths (`width`, 16), as a user registers a model; unregistered after."""
    exec(REGISTER.format(name=NAME, width=width), {})
    try:
        yield
    finally:
        MODELS._entries.pop(NAME, None)


def file_bytes(root) -> dict:
    """Every file of a run directory but the lock (which names its last holder)."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny IMP run of the 32-unit model: its config and run directory."""
    cfg, runs = build_config("mlp-digits", overrides=TINY), tmp_path_factory.mktemp("runs")
    with registered(32):
        lottery = Lottery.open(cfg, runs)
        lottery.run()
    return cfg, lottery.store.root


def test_config_json_records_the_model_and_the_identity(finished):
    cfg, root = finished
    record = json.loads((root / "config.json").read_text())
    assert root.name == cfg.run_name() and record["hash"] == cfg.hash()  # the name still comes from the config
    assert record["model"]["tensors"][0] == "fc1.weight parameter float32 (32, 64)"
    assert record["fingerprint"] == Fingerprint.from_dict(record["model"]).digest
    assert len(record["identity"]) == 10 and record["identity"] != record["hash"]


def test_another_width_is_refused_naming_it_and_nothing_is_overwritten(finished):
    cfg, root = finished
    before = file_bytes(root)
    assert {"config.json", "level_01/summary.json", "level_01/baselines/random_pruning/summary.json"} <= {
        str(p) for p in before}
    with registered(16), pytest.raises(TicketlabError) as refused:
        Lottery.open(cfg, root.parent).run()
    assert str(refused.value) == (f"run directory {root} was made with another model: fc1.weight (16, 64) here, "
                                  f"(32, 64) there; choose another --runs-dir or delete {root}")
    assert file_bytes(root) == before
    with registered(32):  # the same model again resumes: every stage is done, nothing is written
        Lottery.open(cfg, root.parent).run()
    assert file_bytes(root) == before


def test_the_cli_refuses_another_width_in_one_line(finished):
    cfg, root = finished
    script = REGISTER.format(name=NAME, width=16) + "import sys\nfrom ticketlab.cli import main\nsys.exit(main())\n"
    sets = [x for item in TINY for x in ("--set", item)]
    before = file_bytes(root)
    result = subprocess.run([sys.executable, "-c", script, "run", "mlp-digits", *sets, "--runs-dir", root.parent],
                            capture_output=True, text=True, timeout=300)
    assert_user_error(result, f"run directory {root} was made with another model: fc1.weight (16, 64) here")
    assert file_bytes(root) == before


def test_a_directory_without_fingerprint_is_accepted_and_left_as_it_is(finished, tmp_path):
    """Run directories written before fingerprints existed resume with any model of their config."""
    cfg, root = finished
    old = json.loads((root / "config.json").read_text())
    for key in ("fingerprint", "model", "identity"):
        del old[key]
    (tmp_path / root.name).mkdir()
    (tmp_path / root.name / "config.json").write_text(json.dumps(old))
    before = file_bytes(tmp_path / root.name)
    with registered(16):
        Lottery.open(cfg, tmp_path)
    assert file_bytes(tmp_path / root.name) == before


def test_batch_tickets_is_part_of_the_identity(tmp_path):
    alone, batched = (build_config("mlp-digits", overrides=[f"train.batch_tickets={k}"]) for k in (1, 8))
    assert alone.hash() != batched.hash()
    assert batched.hash() == build_config("mlp-digits").hash()  # 8 is the default: not hashed, names unchanged
    assert alone.hash() == "e6414e54b0"  # pinned: a change renames existing run directories
    assert {RunStore.open(tmp_path, c).root.name for c in (alone, batched)} == {alone.run_name(), batched.run_name()}


def test_a_directory_of_unbatched_results_is_refused_to_a_batched_run(tmp_path):
    """Written before batch_tickets was hashed, `--batch-tickets 1` shared the default's directory name."""
    cfg = Config()
    old = {"hash": cfg.hash(), "config": Config().to_dict(), "non_default": {}, "preset": None}
    old["config"]["train"]["batch_tickets"] = 1
    (tmp_path / cfg.run_name()).mkdir()
    (tmp_path / cfg.run_name() / "config.json").write_text(json.dumps(old))
    with pytest.raises(TicketlabError, match="holds a different config: train.batch_tickets 8 here, 1 there; "):
        RunStore.open(tmp_path, cfg)


# -- the fingerprint ------------------------------------------------------------------------------------------------
def test_the_fingerprint_is_the_same_in_another_process():
    code = "from ticketlab.models import build_model; from ticketlab.core.fingerprint import fingerprint; " \
           "print(fingerprint(build_model('resnet20')).digest)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == fingerprint(build_model("resnet20", seed=3)).digest


LAYER = st.tuples(st.sampled_from(["fc", "proj", "head"]), st.integers(1, 6))


def net(layers, dtype=torch.float32) -> nn.Module:
    """Linear layers named `<name><i>` of the given output widths, on 5 inputs."""
    model = nn.Sequential()
    for i, (name, _) in enumerate(layers):
        model.add_module(f"{name}{i}", nn.Linear(widths(layers)[i], widths(layers)[i + 1]))
    return model.to(dtype)


def widths(layers) -> list[int]:
    return [5, *[w for _, w in layers]]


@settings(max_examples=40, deadline=None)
@given(st.lists(LAYER, min_size=1, max_size=4), st.data())
def test_the_fingerprint_changes_with_a_name_a_shape_or_a_dtype(layers, data):
    base = fingerprint(net(layers))
    assert base == fingerprint(net(layers)) and base.difference(fingerprint(net(layers))) is None
    i = data.draw(st.integers(0, len(layers) - 1))
    name, width = layers[i]
    renamed = [*layers[:i], (name + "x", width), *layers[i + 1:]]
    widened = [*layers[:i], (name, width + 1), *layers[i + 1:]]
    assert fingerprint(net(renamed)).digest != base.digest
    shape = (width, widths(layers)[i])
    gone = f"{name}{i}.weight parameter float32 {shape} here, absent there"
    assert base.difference(fingerprint(net(renamed))) == gone
    assert fingerprint(net(widened)).digest != base.digest
    assert base.difference(fingerprint(net(widened))).startswith(f"{name}{i}.weight ({width}, ")
    first = f"{layers[0][0]}0.weight"
    assert fingerprint(net(layers, torch.float64)).difference(base) == f"{first} float64 here, float32 there"


def test_the_fingerprint_sees_buffers_frozen_parameters_and_module_classes():
    base = fingerprint(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))
    frozen = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    frozen[0].bias.requires_grad_(False)
    assert fingerprint(frozen).difference(base) == "0.bias frozen here, parameter there"
    assert fingerprint(nn.Sequential(nn.Linear(3, 3), nn.Tanh())).difference(base) == "module 1 Tanh here, ReLU there"
    normed = fingerprint(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
    assert "1.running_mean buffer float32 (3,)" in normed.tensors
    assert fingerprint(nn.Linear(3, 3)).difference(base) == "class Linear here, Sequential there"
