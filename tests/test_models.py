import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab.core.counting import example_input_for
from ticketlab.core.masks import prunable_names
from ticketlab.errors import TicketlabError
from ticketlab.models import MODELS, build_model, model_info

from .conftest import run_clis

BIG = {"alexnet", "vgg16", "hf"}  # > 60M parameters: shape propagation on the meta device only


def counts(model: nn.Module) -> tuple[int, int]:
    params = dict(model.named_parameters())
    return sum(p.numel() for p in params.values()), sum(params[n].numel() for n in prunable_names(model))


# (name, options, total parameters, prunable weights) for the default number of classes
EXACT = [
    ("lenet300", {}, 266_610, 266_200),
    ("lenet5", {}, 431_080, 430_500),
    ("conv2", {}, 4_301_642, 4_300_992),
    ("conv4", {}, 2_425_930, 2_425_024),
    ("conv6", {}, 2_262_602, 2_261_184),
    ("alexnet", {}, 60_965_224, 60_954_656),
    ("vgg16", {}, 138_357_544, 138_344_128),
    ("resnet50", {}, 25_557_032, 25_502_912),
    ("squeezenet", {}, 1_248_424, 1_244_448),
    ("squeezenet", {"version": "1.1"}, 1_235_496, 1_231_552),
    ("googlenet", {}, 6_998_552, 6_990_272),
    ("resnet20", {}, 272_474, 270_896),  # OpenLTH: 1x1-conv shortcuts
    ("resnet20", {"shortcut": "pad"}, 269_722, 268_336),  # He et al. option A
    ("vgg16-cifar", {}, 14_728_266, 14_715_584),
    ("vgg19-cifar", {}, 20_040_522, 20_024_000),
    ("mlp", {}, 266_610, 266_200),
]


@pytest.mark.parametrize(("name", "options", "total", "prunable"), EXACT)
def test_exact_parameter_counts(name, options, total, prunable):
    assert counts(build_model(name, device="meta", **options)) == (total, prunable)


def test_googlenet_is_in_the_published_range():
    total, _ = counts(build_model("googlenet", device="meta"))
    assert 6_600_000 <= total <= 7_000_000


@pytest.mark.parametrize(("name", "expected"), [
    ("lenet300", ["fc1", "fc2", "fc3"]),
    ("lenet5", ["conv1", "conv2", "fc1", "fc2"]),
    ("conv6", ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc1", "fc2", "fc3"]),
    ("alexnet", ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2", "fc3"]),
    ("vgg16", ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1",
               "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7", "fc8"]),
])
def test_layer_names_match_the_published_tables(name, expected):
    assert prunable_names(build_model(name, device="meta")) == [f"{layer}.weight" for layer in expected]


def test_han_per_layer_weight_counts():
    params = dict(build_model("alexnet", device="meta").named_parameters())
    # Table 4 of Han et al. prints 35K, 307K, 885K, 663K, 442K, 38M, 17M, 4M
    assert [params[f"conv{i}.weight"].numel() for i in range(1, 6)] == [34_848, 307_200, 884_736, 663_552, 442_368]
    assert [params[f"fc{i}.weight"].numel() for i in range(1, 4)] == [37_748_736, 16_777_216, 4_096_000]


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_has_input_shape_and_respects_num_classes(name):
    model = build_model(name, num_classes=7, device="meta")
    assert model.input_shape == model_info(name).input_shape
    assert model(example_input_for(model, batch=1)).shape == (1, 7)


@pytest.mark.parametrize("name", sorted(set(MODELS.names()) - BIG))
def test_forward_on_a_real_batch(name):
    batch = 1 if model_info(name).input_shape[-1:] >= (224,) else 3
    model = build_model(name, num_classes=5).eval()
    x = example_input_for(model, batch=batch)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (batch, 5) and torch.isfinite(y).all()


def test_resnet20_pad_shortcut_forward():
    model = build_model("resnet20", shortcut="pad").eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "conv2", "resnet20", "vgg16-cifar", "mlp"])
def test_seeded_initialisation_is_reproducible(name):
    a, b, c = (build_model(name, seed=s).state_dict() for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_build_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    build_model("lenet300", seed=9)
    assert torch.equal(torch.rand(4), expected)


def test_glorot_init_and_zero_bias():
    model = build_model("lenet300", seed=0)
    assert float(model.fc1.bias.detach().abs().sum()) == 0.0
    expected_std = (2 / (784 + 300)) ** 0.5
    assert abs(float(model.fc1.weight.detach().std()) - expected_std) < 0.05 * expected_std


def test_unknown_name_suggests_the_closest():
    with pytest.raises(TicketlabError, match="unknown model 'lenet30' \\(did you mean 'lenet300'\\?\\)"):
        build_model("lenet30")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_classes": 0}, "num_classes must be a positive integer, got 0"),
    ({"num_classes": 2.5}, "num_classes must be a positive integer"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"hiden": (10,)}, "model 'mlp' has no option 'hiden' \\(did you mean 'hidden'\\?\\)"),
    ({"hidden": (10, 0)}, "mlp option hidden must be a tuple of positive integers"),
])
def test_bad_arguments_raise_one_line_errors(kwargs, message):
    with pytest.raises(TicketlabError, match=message) as info:
        build_model("mlp", **kwargs)
    assert "\n" not in str(info.value)


def test_bad_family_options():
    with pytest.raises(TicketlabError, match="depth must be 6n\\+2"):
        build_model("resnet20", depth=21)
    with pytest.raises(TicketlabError, match="shortcut must be one of conv, pad"):
        build_model("resnet20", shortcut="zero")
    with pytest.raises(TicketlabError, match="version must be one of 1.0, 1.1"):
        build_model("squeezenet", version="2", device="meta")


def test_mlp_options_and_instance_input_shape():
    model = build_model("mlp", num_classes=3, hidden=(32,), input_shape=(40,))
    assert model.input_shape == (40,)
    assert prunable_names(model) == ["fc1.weight", "fc2.weight"]
    assert model(torch.randn(6, 40)).shape == (6, 3)
    assert build_model("mlp", hidden=()).fc1.weight.shape == (10, 784)  # logistic regression


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=3), st.integers(1, 50), st.integers(1, 12))
def test_mlp_parameter_count_formula(hidden, features, num_classes):
    widths = [features, *hidden, num_classes]
    model = build_model("mlp", num_classes=num_classes, hidden=hidden, input_shape=features, device="meta")
    assert counts(model) == (sum((a + 1) * b for a, b in zip(widths, widths[1:], strict=False)),
                             sum(a * b for a, b in zip(widths, widths[1:], strict=False)))


@pytest.fixture
def scratch_registry(monkeypatch):
    """User registrations made in a test disappear afterwards."""
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    return MODELS


def test_user_registered_model_goes_through_build_model(scratch_registry):
    @scratch_registry.register("tiny", input_shape=(2, 4), num_classes=3)
    def tiny(num_classes, hidden=5):
        """A tiny test MLP."""
        return nn.Sequential(nn.Flatten(), nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    model = build_model("tiny", seed=1)
    assert model.input_shape == (2, 4)
    assert model(torch.randn(2, 2, 4)).shape == (2, 3)
    assert build_model("tiny", num_classes=6, hidden=7)[3].weight.shape == (6, 7)
    assert torch.equal(build_model("tiny", seed=1)[1].weight, model[1].weight)
    assert model_info("tiny").description == "A tiny test MLP."
    assert "tiny" in MODELS.names()


@pytest.fixture(scope="module")
def listed():
    """`models`, `models --json` and `models vgg61` through the real command, started together."""
    return dict(zip(["table", "json", "unknown"], run_clis(["models"], ["models", "--json"], ["models", "vgg61"]),
                    strict=True))


def test_cli_table_lists_every_model(listed):
    result = listed["table"]
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "parameters", "prunable"]
    assert {line.split()[0] for line in lines[1:]} == set(MODELS.names())
    lenet = next(line for line in lines if line.startswith("lenet300 "))
    assert lenet.split()[1:5] == ["266,610", "266,200", "1x28x28", "10"]


def test_cli_json(listed):
    result = listed["json"]
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(MODELS.names())
    assert rows["lenet300"]["prunable"] == 266_200
    assert rows["vgg16"]["parameters"] == 138_357_544
    assert rows["alexnet"]["input_shape"] == [3, 227, 227]


def test_cli_unknown_name_exits_2_with_one_line(listed):
    result = listed["unknown"]
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "did you mean 'vgg16'" in result.stderr
