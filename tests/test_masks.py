import pytest
import torch
from torch import nn

from ticketlab.core.masks import Masks, describe_density, prunable_names
from ticketlab.errors import TicketlabError


def test_default_prunable_set_is_linear_and_conv_weights(tiny):
    assert prunable_names(tiny) == ["conv1.weight", "conv2.weight", "fc1.weight", "out.weight"]


def test_select_by_type_pattern_and_exclude(tiny):
    assert prunable_names(tiny, types=(nn.Linear,)) == ["fc1.weight", "out.weight"]
    assert prunable_names(tiny, include=["conv*"]) == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]
    assert prunable_names(tiny, exclude=["out.weight"]) == ["conv1.weight", "conv2.weight", "fc1.weight"]
    with pytest.raises(TicketlabError, match="'nope\\*' matches no parameter"):
        prunable_names(tiny, exclude=["nope*"])


def test_conv1d_conv3d_prunable():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Conv3d(3, 3, 1), nn.BatchNorm3d(3))
    assert prunable_names(model) == ["0.weight", "1.weight"]


def test_density_sparsity_and_model_density(tiny):
    masks = Masks.ones(tiny)
    m = dict(masks)
    m["fc1.weight"] = torch.zeros_like(m["fc1.weight"])
    masks = Masks(m)
    numels = masks.numels()
    total = sum(numels.values())
    assert masks.density() == pytest.approx((total - numels["fc1.weight"]) / total)
    assert masks.sparsity() == pytest.approx(1 - masks.density())
    assert masks.densities()["fc1.weight"] == 0.0
    all_params = sum(p.numel() for p in tiny.parameters())
    assert masks.model_density(tiny) == pytest.approx((all_params - numels["fc1.weight"]) / all_params)


def test_apply_zeroes_in_place_and_keeps_parameter_objects(tiny):
    before = tiny.fc1.weight
    m = dict(Masks.ones(tiny))
    m["fc1.weight"][0] = False
    Masks(m).apply(tiny)
    assert tiny.fc1.weight is before
    assert (tiny.fc1.weight[0] == 0).all() and (tiny.fc1.weight[1] != 0).any()


def test_combine_compare_overlap(tiny):
    a = dict(Masks.ones(tiny))
    b = dict(Masks.ones(tiny))
    a["out.weight"][0] = False
    b["out.weight"][1] = False
    a, b = Masks(a), Masks(b)
    both, either = a & b, a | b
    assert both.kept()["out.weight"] == 48 - 32
    assert either == Masks.ones(tiny)
    assert a != b and a == a.clone()
    assert a.overlap(either) == 1.0 and 0 < a.overlap(b) < 1


def test_mismatches_are_rejected(tiny):
    masks = Masks.ones(tiny)
    other = Masks.ones(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(TicketlabError, match="different tensors"):
        masks & other
    with pytest.raises(TicketlabError, match="'0.weight' names no parameter"):
        other.apply(tiny)
    bad = dict(masks)
    bad["fc1.weight"] = torch.ones(3, 3, dtype=torch.bool)
    with pytest.raises(TicketlabError, match="'fc1.weight' has shape"):
        Masks(bad).check(tiny)
    with pytest.raises(TicketlabError, match="'x' must be a bool tensor"):
        Masks({"x": torch.ones(2)})


def test_save_load_roundtrip_is_bit_packed(tiny, tmp_path):
    g = torch.Generator().manual_seed(0)
    masks = Masks({n: torch.rand(t.shape, generator=g) > 0.5 for n, t in Masks.ones(tiny).items()})
    path = tmp_path / "m.safetensors"
    masks.save(path)
    assert Masks.load(path) == masks
    bits = sum(masks.numels().values())
    assert path.stat().st_size < bits / 8 + 1024  # 1 bit per weight plus a small header


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not-masks"])
def test_corrupt_files_are_rejected(tiny, tmp_path, damage):
    path = tmp_path / "m.safetensors"
    Masks.ones(tiny).save(path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) - 10])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 3 + data[3:40])
    else:
        from ticketlab.core.files import save_tensors

        save_tensors(path, {"w": torch.zeros(3)})
    with pytest.raises(TicketlabError, match=str(path.name)):
        Masks.load(path)


def test_to_and_clone_are_independent(tiny):
    masks = Masks.ones(tiny)
    copy = masks.clone().to("cpu")
    copy["out.weight"][0, 0] = False
    assert masks["out.weight"][0, 0]


def test_describe_density_prints_both():
    assert describe_density(0.211) == "kept 21.1% (sparsity 78.9%)"
