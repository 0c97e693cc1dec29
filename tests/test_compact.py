"""Structured compaction: dead neurons and channels removed, outputs identical (1e-5), unsupported models refused."""

from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.deploy.compact import compact
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model


def random_biases(model: nn.Module, seed: int) -> nn.Module:
    """Non-zero biases (the zoo initialises them to 0), so dead units still send a constant."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.5)
    return model


def same_outputs(a: nn.Module, b: nn.Module, seed: int = 0, batch: int = 3) -> None:
    x = torch.randn(batch, *a.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected, got = a.eval()(x), b.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["lenet300", "conv2", "conv4", "conv6"])
def test_neuron_pruned_zoo_models_compact_with_identical_outputs(name):
    model = random_biases(build_model(name, seed=0), seed=1)
    masks = prune(model, Masks.ones(model), PruneSpec(criterion="neuron", rate=0.5, seed=2))
    masks = prune(model, masks, PruneSpec(criterion="magnitude", rate=0.9, seed=3))  # adds dead outgoing units
    masks.apply(model)
    small, small_masks = compact(model, masks, return_masks=True)
    same_outputs(model, small)
    assert params(small) < 0.7 * params(model)
    small_masks.check(small)
    assert sum(small_masks.kept().values()) <= sum(masks.kept().values())
    assert list(small.state_dict()) == list(model.state_dict())  # same names: the masks and exports still apply
    last = [n for n in masks][-1]
    assert small.get_submodule(last[:-7]).out_features == model.get_submodule(last[:-7]).out_features


def test_dead_input_neurons_fold_into_the_next_linear():
    model = random_biases(build_model("lenet300", seed=0), seed=1)
    with torch.no_grad():
        model.fc1.bias.abs_()  # dead neurons of fc1 now send relu(bias) > 0 into fc2
    rows = torch.zeros(300, 784, dtype=torch.bool)
    rows[150:] = True
    masks = Masks({**Masks.ones(model), "fc1.weight": rows})
    masks.apply(model)
    small = compact(model, masks)
    assert small.fc1.out_features == 150 and small.fc2.in_features == 150
    same_outputs(model, small)


def test_dead_channels_before_a_zero_padded_conv_stay_unless_their_constant_is_zero():
    model = random_biases(build_model("conv2", seed=0), seed=1)
    with torch.no_grad():
        model.conv1.bias[:16] = 1.0  # dead, relu(1) = 1: at the borders conv2 sees 0 padding beside it -> stays
        model.conv1.bias[16:32] = -1.0  # dead, relu(-1) = 0: contributes nothing -> removed
    mask = torch.ones(64, 3, 3, 3, dtype=torch.bool)
    mask[:32] = False
    masks = Masks({**Masks.ones(model), "conv1.weight": mask})
    masks.apply(model)
    small = compact(model, masks)
    assert small.conv1.out_channels == 48
    same_outputs(model, small)


def conv_bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 8, 3)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(8, 6, 3, padding=1)), ("bn2", nn.BatchNorm2d(6)), ("relu2", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)), ("drop", nn.Dropout(0.5)), ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(6 * 3 * 3, 10)), ("bn3", nn.BatchNorm1d(10)), ("act", nn.Tanh()),
        ("fc2", nn.Linear(10, 4)),
    ]))
    with torch.no_grad():
        for bn in (net.bn1, net.bn2, net.bn3):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2)
            bn.weight.normal_()
            bn.bias.normal_()
    net.input_shape = (3, 8, 8)
    return random_biases(net, seed=4).eval()


def test_batchnorm_is_sliced_along_and_constants_pass_through_it():
    net = conv_bn_net()
    masks = Masks.ones(net)
    conv1, conv2, fc1 = masks["conv1.weight"].clone(), masks["conv2.weight"].clone(), masks["fc1.weight"].clone()
    conv1[:3] = False  # dead input: conv2 pads with zeros, so they stay unless bn1 -> relu gives 0
    conv2[:2] = False  # dead input: feed fc1 through pool + flatten -> folded exactly (spatial factor 9)
    fc1[:, 9 * 5:] = False  # channel 5 of conv2 feeds nothing -> removed (dead output)
    masks = Masks({"conv1.weight": conv1, "conv2.weight": conv2, "fc1.weight": fc1, "fc2.weight": masks["fc2.weight"]})
    masks.apply(net)
    small = compact(net, masks)
    assert small.conv2.out_channels == 3 and small.bn2.num_features == 3 and small.fc1.in_features == 27
    assert small.bn1.num_features == small.conv1.out_channels
    same_outputs(net, small, batch=4)


def test_dead_outputs_cascade_backwards():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    net.input_shape = (6,)
    masks = Masks.ones(net)
    last, middle = masks["4.weight"].clone(), masks["2.weight"].clone()
    last[:, :2] = False  # units 0, 1 of layer 2 feed nothing
    middle[2:, :3] = False  # units 0..2 of layer 0 feed only units 0, 1 of layer 2 -> dead once those go
    masks = Masks({"0.weight": masks["0.weight"], "2.weight": middle, "4.weight": last})
    masks.apply(net)
    small = compact(net, masks)
    assert [small[0].out_features, small[2].out_features] == [2, 2]
    same_outputs(net, small)


@settings(max_examples=30, deadline=None)
@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=4), density=st.floats(0.0, 1.0),
       act=st.sampled_from([nn.ReLU, nn.Tanh, nn.Sigmoid]), seed=st.integers(0, 2**16))
def test_random_mlps_keep_their_outputs(widths, density, act, seed):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip([4, *widths], widths, strict=False)):
        layers += [nn.Linear(a, b)] + ([act()] if i < len(widths) - 1 else [])
    net = nn.Sequential(*layers)
    net.input_shape = (4,)
    random_biases(net, seed)
    masks = Masks({n: torch.rand(t.shape, generator=g) < density for n, t in Masks.ones(net).items()})
    masks.apply(net)
    try:
        small = compact(net, masks)
    except TicketlabError as e:  # refused only when a hidden layer has a dead unit, and named
        hidden = [n[:-7] for n in masks][:-1]
        assert "layer collapse" in str(e) and any(f"layer {n!r}" in str(e) for n in hidden)
        assert any((~masks[f"{n}.weight"]).all(dim=1).any() for n in hidden) or any(
            (~masks[f"{n}.weight"]).all(dim=0).any() for n in [m[:-7] for m in masks][1:])
        return
    same_outputs(net, small, seed=seed)
    assert small[-1].out_features == widths[-1]
    assert all(m.out_features > 0 for m in small if isinstance(m, nn.Linear))  # never a zero-width layer


def test_a_layer_left_without_units_is_refused_by_name():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    masks = Masks.ones(net)
    middle = masks["2.weight"].clone()
    middle[:] = False  # layer 2 keeps nothing: layer 0's units feed nothing (found first), layer 2's take nothing
    masks = Masks({**masks, "2.weight": middle})
    with pytest.raises(TicketlabError, match="every unit of layer '0' is dead.*layer collapse"):
        compact(net, masks)
    last = masks["4.weight"].clone()
    last[:] = False  # now layer 2 (and before it layer 0) feeds nothing
    with pytest.raises(TicketlabError, match="layer collapse"):
        compact(net, Masks({**Masks.ones(net), "4.weight": last}))


def test_sequentials_the_exact_path_does_not_handle_take_the_graph_path():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.LayerNorm(5), nn.Linear(5, 2))
    net.input_shape = (6,)
    random_biases(net, seed=2)
    masks = Masks.ones(net)
    second = masks["2.weight"].clone()
    second[:, :3] = False  # units 0..2 of layer 0 feed nothing: removed; LayerNorm's 5 units stay whole
    masks = Masks({**masks, "2.weight": second})
    masks.apply(net)
    small = compact(net, masks)
    assert small[0].out_features == 5 and small[2].in_features == 5 and small[3].normalized_shape == (5,)
    same_outputs(net, small)
