"""Structured compaction of models that are not nn.Sequential (the Torch-Pruning path): residual CNNs and BERT lose
their dead channels, neurons and heads, keep their outputs (1e-5), refuse layer collapse and unmodelled ops."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.deploy.compact import compact
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model

pytest.importorskip("torch_pruning")


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_same(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected, got = a.eval()(x), b.eval()(x)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 1e-5 * max(1.0, float(expected.abs().max()))


def trained_looking_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics and shifts as after training, so a dead channel's constant is not 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(generator=g)
                m.running_var.uniform_(0.5, 2, generator=g)
                m.bias.normal_(generator=g)
    return model


def with_masks(model: nn.Module, edits: dict) -> Masks:
    """All-ones masks with `edits[name](mask)` applied in place, then applied to the model."""
    masks = dict(Masks.ones(model))
    for name, edit in edits.items():
        edit(masks[name])
    masks = Masks(masks)
    masks.apply(model)
    return masks


def test_resnet20_loses_dead_channels_with_equal_outputs():
    model = trained_looking_batchnorm(build_model("resnet20", seed=0), seed=1).eval()
    masks = prune(model, Masks.ones(model), PruneSpec(criterion="neuron", rate=0.5, seed=2))
    masks = prune(model, masks, PruneSpec(criterion="magnitude", rate=0.9, seed=3))
    masks = dict(masks)
    for reader in ("blocks.7.conv1.weight", "blocks.8.conv1.weight", "fc.weight"):
        masks[reader][:, :8] = False  # channels 0..7 of the last stage's residual stream feed nothing
    masks = Masks(masks)
    masks.apply(model)
    small, small_masks = compact(model, masks, return_masks=True)
    assert params(small) < 0.8 * params(model)
    assert small.blocks[8].conv2.out_channels <= 56 and small.fc.in_features == small.blocks[8].conv2.out_channels
    assert small.blocks[6].shortcut[0].out_channels == small.fc.in_features  # the residual stream shrank as one
    assert small.fc.out_features == 10
    small_masks.check(small)
    assert_same(model, small, torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(9)))


class ResidualNet(nn.Module):
    """A residual CNN of one's own: biases everywhere, a 1x1 conv without padding, a Linear head after Flatten."""

    input_shape = (3, 6, 6)

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.b = nn.Conv2d(12, 8, 1)
        self.head = nn.Linear(8 * 6 * 6, 5)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.relu(h + self.b(F.relu(self.bn(self.a(h)))))
        return self.head(h.flatten(1))


def test_own_residual_cnn_folds_constants_and_shrinks_the_residual_stream():
    torch.manual_seed(0)
    model = trained_looking_batchnorm(ResidualNet(), seed=1).eval()
    with torch.no_grad():
        model.bn.bias[:4] = 1.0  # channels 0..3 of `a` will take nothing in: relu(bn(bias)) > 0, folded into b
        model.bn.running_mean[:4] = 0.0

    def dead_in(m):
        m[:4] = False

    def feeds_nothing(m):
        m[:, 4:6] = False

    def stream_channel_7_unread(m):
        m[:, 7] = False

    def head_ignores_channel_7(m):
        m[:, 7 * 36 : 8 * 36] = False

    masks = with_masks(model, {"a.weight": lambda m: (dead_in(m), stream_channel_7_unread(m)),
                               "b.weight": feeds_nothing, "head.weight": head_ignores_channel_7})
    small = compact(model, masks)
    assert (small.a.out_channels, small.bn.num_features, small.b.in_channels) == (6, 6, 6)
    assert (small.stem.out_channels, small.b.out_channels, small.head.in_features) == (7, 7, 7 * 36)
    assert params(small) < params(model)
    assert_same(model, small, torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(3)))


def tiny_bert():
    pytest.importorskip("transformers")
    return build_model("tiny-bert", seed=0, num_classes=3, vocab_size=64).eval()


def test_tiny_bert_loses_dead_heads_and_ffn_neurons_with_equal_outputs():
    model = tiny_bert()
    masks = dict(prune(model, Masks.ones(model), PruneSpec(rate=0.5, seed=3)))
    layer = "hf.bert.encoder.layer.{}."
    masks[layer.format(0) + "attention.output.dense.weight"][:, 16:32] = False  # head 1 of layer 0: read by nothing
    for proj in ("query", "key", "value"):
        masks[layer.format(1) + f"attention.self.{proj}.weight"][48:64] = False  # head 3 of layer 1: takes nothing
    masks[layer.format(0) + "intermediate.dense.weight"][:100] = False  # 100 neurons send gelu(bias): folded
    masks[layer.format(1) + "output.dense.weight"][:, 200:] = False  # 56 neurons read by nothing
    masks = Masks(masks)
    masks.apply(model)
    small, small_masks = compact(model, masks, return_masks=True)
    for i, width in ((0, 156), (1, 200)):
        block = small.hf.bert.encoder.layer[i]
        assert block.attention.self.num_attention_heads == 3 and block.attention.self.query.out_features == 48
        assert block.attention.output.dense.in_features == 48 and block.intermediate.dense.out_features == width
    assert small.hf.config.hidden_size == 64 and small.hf.classifier.out_features == 3  # hidden size stays whole
    assert params(small) < 0.8 * params(model)
    small_masks.check(small)
    assert_same(model, small, model.example_input(5, seed=7))


def test_layer_collapse_is_refused_naming_the_layer():
    model = build_model("resnet20", seed=0).eval()  # fresh BatchNorm: a channel with no kept weight in sends 0
    masks = with_masks(model, {"blocks.0.conv1.weight": lambda m: m.fill_(False)})
    with pytest.raises(TicketlabError, match="every unit of layer 'blocks.0.conv1' is dead.*layer collapse"):
        compact(model, masks)
    bert = tiny_bert()
    masks = with_masks(bert, {"hf.bert.encoder.layer.1.attention.output.dense.weight": lambda m: m.fill_(False)})
    with pytest.raises(TicketlabError, match=r"layer 'hf\.bert\.encoder\.layer\.1\.attention\.self\..*layer collapse"):
        compact(bert, masks)


class ChannelSoftmax(nn.Module):
    """Softmax across the hidden units: removing a unit changes every other one, which the graph does not say."""

    input_shape = (4,)

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.l2(torch.softmax(self.l1(x), dim=1))


def test_an_operation_compaction_does_not_model_is_refused_not_returned_wrong():
    torch.manual_seed(0)
    model = ChannelSoftmax()
    masks = with_masks(model, {"l2.weight": lambda m: m[:, :2].fill_(False)})
    with pytest.raises(TicketlabError, match="could not keep the outputs"):
        compact(model, masks)


def test_a_model_without_input_shape_needs_an_example():
    model = nn.ModuleDict({"l": nn.Linear(2, 2)})
    with pytest.raises(TicketlabError, match="needs example_input"):
        compact(model, Masks.ones(model))


class InputResidual(nn.Module):
    """x + f(x): the input's units run through the stream, so no stream unit can go."""

    input_shape = (4,)

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.l2(x + self.l1(x))


def test_units_coupled_to_the_network_input_stay():
    torch.manual_seed(0)
    model = InputResidual()
    masks = with_masks(model, {"l2.weight": lambda m: m[:, :2].fill_(False)})
    small = compact(model, masks)
    assert small.l1.out_features == 4 and small.l2.in_features == 4
    assert_same(model, small, torch.randn(3, 4))
