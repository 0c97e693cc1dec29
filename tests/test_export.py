"""Compact checkpoints: size against the floor on real runs, exact round trips, bad input."""

import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketlab.core.files import load_tensors, save_tensors
from ticketlab.core.masks import Masks
from ticketlab.deploy.export import (
    encode,
    export_compact,
    export_run,
    floor_bytes,
    load_compact,
    load_compact_masks,
    load_compact_state_dict,
    read_compact,
)
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.presets import build_config
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model

from .conftest import assert_user_error, main_in_process, run_cli


def one_level_run(root, rate: float):
    """A real (tiny) IMP run: level 0 dense, level 1 at density 1 - rate in every layer."""
    cfg = build_config("mlp-digits", overrides=[
        "train.steps=20it", "train.eval_every=20it", "train.checkpoint_every=20it", f"prune.rate={rate}",
        "prune.rates={}", "lottery.levels=1", "lottery.baselines=[]"])
    return Lottery.open(cfg, root).run().root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {density: one_level_run(root, 1 - density) for density in (0.1, 0.02)}


def digits_mlp(**options):
    return build_model("mlp", num_classes=10, input_shape=(64,), **options)


@pytest.mark.parametrize("density", [0.1, 0.02])
@pytest.mark.parametrize("fmt", ["auto", "bitmask"])
def test_size_within_floor_on_real_runs(runs, tmp_path, density, fmt):
    report = export_run(runs[density], 1, tmp_path / "x.safetensors", fmt)
    assert report.density == pytest.approx(density, abs=0.001)
    assert report.bytes == (tmp_path / "x.safetensors").stat().st_size
    assert report.dense_bytes == (runs[density] / "level_01" / "final.safetensors").stat().st_size
    assert report.vs_floor <= 1.15, report.format()
    assert report.vs_dense < 2 * density + 0.05  # values + index overhead, nowhere near dense
    if fmt == "auto":
        assert set(report.encodings.values()) == {"csr" if density == 0.02 else "bitmask"}


def test_auto_is_never_larger_than_a_fixed_format(runs, tmp_path):
    sizes = {fmt: export_run(runs[0.02], 1, tmp_path / f"{fmt}.safetensors", fmt).bytes
             for fmt in ("auto", "bitmask", "csr")}
    assert sizes["auto"] <= min(sizes["bitmask"], sizes["csr"])


@pytest.mark.parametrize("fmt", ["auto", "bitmask", "csr"])
def test_round_trip_into_a_plain_dense_model(runs, tmp_path, fmt):
    stage = runs[0.1] / "level_01"
    export_run(runs[0.1], 1, tmp_path / "x.safetensors", fmt)
    final, _ = load_tensors(stage / "final.safetensors")
    masks = Masks.load(stage / "masks.safetensors")
    state = load_compact_state_dict(tmp_path / "x.safetensors")
    assert set(state) == set(final)
    for name, t in final.items():
        expected = t * masks[name] if name in masks else t
        assert torch.equal(state[name], expected), name
    assert load_compact_masks(tmp_path / "x.safetensors") == masks
    model = load_compact(tmp_path / "x.safetensors", digits_mlp())
    reference = digits_mlp()
    reference.load_state_dict(final)
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x), reference(x))
    source = read_compact(tmp_path / "x.safetensors")[1]
    assert source["fc1.weight"]["shape"] == [300, 64] and source["fc1.bias"]["encoding"] == "dense"


def test_other_architecture_names_the_first_mismatching_tensor(runs, tmp_path):
    path = tmp_path / "x.safetensors"
    export_run(runs[0.1], 1, path)
    with pytest.raises(TicketlabError, match=r"'fc1\.weight' has shape \(300, 64\), the model \(200, 64\)"):
        load_compact(path, digits_mlp(hidden=(200, 100)))
    with pytest.raises(TicketlabError, match=r"'fc3\.weight' has shape \(10, 100\), the model \(50, 100\)"):
        load_compact(path, digits_mlp(hidden=(300, 100, 50)))
    layers = {"fc1": torch.nn.Linear(64, 300), "fc2": torch.nn.Linear(300, 100), "fc3": torch.nn.Linear(100, 10)}
    with pytest.raises(TicketlabError, match=r"lacks tensor 'fc4\.weight'"):
        load_compact(path, _named({**layers, "fc4": torch.nn.Linear(10, 10)}))
    with pytest.raises(TicketlabError, match=r"has tensor 'fc3\.(weight|bias)' that the model lacks"):
        load_compact(path, _named({"fc1": torch.nn.Linear(64, 300), "fc2": torch.nn.Linear(300, 100)}))


def _named(layers: dict) -> torch.nn.Module:
    model = torch.nn.Module()
    for name, layer in layers.items():
        model.add_module(name, layer)
    return model


def test_corrupt_files_raise_one_line_errors(runs, tmp_path):
    path = tmp_path / "x.safetensors"
    export_run(runs[0.02], 1, path, "csr")
    data = path.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(TicketlabError, match="corrupt or truncated"):
        load_compact_state_dict(tmp_path / "truncated.safetensors")
    with pytest.raises(TicketlabError, match="not a ticketlab compact checkpoint"):
        load_compact_state_dict(runs[0.02] / "level_01" / "final.safetensors")
    tensors, meta = load_tensors(path)
    tensors["fc1.weight.col"] = tensors["fc1.weight.col"] + 1000  # column indices past the end
    save_tensors(tmp_path / "bad.safetensors", tensors, metadata=meta)
    with pytest.raises(TicketlabError, match=r"corrupt compact checkpoint .*'fc1\.weight'") as info:
        load_compact_state_dict(tmp_path / "bad.safetensors")
    assert "\n" not in str(info.value)
    del tensors["fc2.weight.values"]
    save_tensors(tmp_path / "missing.safetensors", tensors, metadata=meta)
    with pytest.raises(TicketlabError, match="corrupt compact checkpoint"):
        load_compact_state_dict(tmp_path / "missing.safetensors")


def test_csr_refuses_one_dimensional_tensors():
    state = {"w": torch.randn(4, 5), "b": torch.randn(5)}
    masks = Masks({"w": torch.rand(4, 5) < 0.5, "b": torch.tensor([True, False, True, True, False])})
    with pytest.raises(TicketlabError, match=r"format 'csr' cannot store tensor 'b' of shape \(5,\)"):
        encode(state, masks, "csr")
    assert encode(state, masks, "auto")[1]["b"]["encoding"] == "bitmask"
    with pytest.raises(TicketlabError, match="unknown export format 'zip'"):
        encode(state, masks, "zip")


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), density=st.floats(0, 1),
       fmt=st.sampled_from(["auto", "bitmask", "csr"]), seed=st.integers(0, 2**16))
def test_encode_decode_round_trip(tmp_path_factory, shape, density, fmt, seed):
    if fmt == "csr" and len(shape) < 2:
        fmt = "bitmask"
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=g)
    mask = torch.rand(shape, generator=g) < density
    state = {"w": weight, "b": torch.randn(3, generator=g).double(), "n": torch.tensor(7)}
    path = tmp_path_factory.mktemp("rt") / "x.safetensors"
    report = export_compact(state, Masks({"w": mask}), path, fmt)
    decoded, _, masks = read_compact(path)
    assert torch.equal(decoded["w"], weight * mask) and torch.equal(masks["w"], mask)
    assert torch.equal(decoded["b"], state["b"]) and torch.equal(decoded["n"], state["n"])
    assert report.floor_bytes == floor_bytes(state, Masks({"w": mask}))


def test_cli_exports_and_prints_the_ratios(runs, tmp_path):
    out = tmp_path / "x.safetensors"
    result = run_cli("export", runs[0.1], "--level", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "vs dense checkpoint" in result.stdout and "vs floor" in result.stdout and "kept 10.0%" in result.stdout
    assert load_compact_masks(out).density() == pytest.approx(0.1, abs=0.001)


def test_cli_bad_input(runs, tmp_path, capsys):
    assert_user_error(run_cli("export", runs[0.1], "--level", "7"), "no level 7", "levels: 0, 1")
    # The command's other messages through its main() in this process (its real command line: above).
    broken = tmp_path / "run"
    shutil.copytree(runs[0.1], broken)
    masks = Masks.load(broken / "level_01" / "masks.safetensors")
    Masks({**masks, "fc1.bias": torch.ones(300, dtype=torch.bool)}).save(broken / "level_01" / "masks.safetensors")
    assert_user_error(main_in_process(capsys, "export", broken, "--level", "1", "--format", "csr", "--out",
                                      tmp_path / "x"), "'fc1.bias'", "csr")
    (broken / "level_01" / "masks.safetensors").unlink()
    assert_user_error(main_in_process(capsys, "export", broken, "--level", "1"), "no masks.safetensors")
    assert_user_error(main_in_process(capsys, "export", tmp_path / "nowhere"), "run directory not found")
