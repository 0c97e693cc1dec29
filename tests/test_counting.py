"""Counting: hand-counted MACs, masks, activation densities, attention, density tables, errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab.core.counting import (
    count,
    format_counts,
    load_density_table,
    masks_from_density_table,
)
from ticketlab.core.masks import Masks
from ticketlab.core.pruning import round_half_up
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model


class Shapes(nn.Module):
    """Grouped+strided+padded Conv2d, dilated Conv2d, Conv1d, Conv3d and a Linear on 3-D input."""

    input_shape = (4, 9, 9)

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
        self.dilated = nn.Conv2d(8, 6, 3, padding=2, dilation=2)
        self.conv1d = nn.Conv1d(6, 5, 3, stride=2, padding=1)
        self.conv3d = nn.Conv3d(1, 2, (2, 3, 1), padding=(0, 1, 0))
        self.linear = nn.Linear(13, 7)

    def forward(self, x):
        d = self.dilated(torch.relu(self.grouped(x)))  # (B, 6, 5, 5)
        c = self.conv1d(d.flatten(2))  # (B, 5, 13)
        v = self.conv3d(c.unsqueeze(1).unsqueeze(-1))  # (B, 2, 4, 13, 1)
        return self.linear(c), v  # linear on (batch, seq=5, features=13)


# MACs per sample = output elements x (in_channels / groups) x kernel volume; Linear: leading dims x in x out.
HAND = {
    "grouped": (8 * 5 * 5) * (4 // 2) * (3 * 3),  # H_out = (9 + 2*1 - 3) // 2 + 1 = 5
    "dilated": (6 * 5 * 5) * 8 * (3 * 3),  # H_out = 5 + 2*2 - 2*(3-1) - 1 + 1 = 5
    "conv1d": (5 * 13) * 6 * 3,  # L_out = (25 + 2 - 3) // 2 + 1 = 13
    "conv3d": (2 * 4 * 13 * 1) * 1 * (2 * 3 * 1),  # D_out = 5 - 2 + 1 = 4, H_out = 13 + 2 - 3 + 1 = 13
    "linear": 5 * (13 * 7),
}


def test_hand_counted_macs_and_params():
    model = Shapes()
    counts = count(model, example_input=torch.randn(3, 4, 9, 9))
    assert {r.name: r.macs_dense for r in counts.layers} == HAND
    assert counts.macs_dense == sum(HAND.values())
    assert counts.params == sum(p.numel() for p in model.parameters())  # biases are parameters
    assert counts.layer("grouped").params == 8 * 2 * 3 * 3 + 8
    # no masks: every weight kept, weight-sparse == dense
    assert counts.macs_weight_sparse == counts.macs_dense
    assert counts.kept == counts.params


def test_per_sample_does_not_depend_on_batch():
    model = Shapes()
    one = count(model, example_input=torch.randn(1, 4, 9, 9))
    five = count(model, example_input=torch.randn(5, 4, 9, 9))
    assert one.macs_dense == five.macs_dense and five.batch_size == 5


def test_masks_reduce_weight_sparse_macs_by_kept_fraction():
    model = Shapes()
    generator = torch.Generator().manual_seed(0)
    masks = Masks({n: torch.rand(p.shape, generator=generator) < 0.3
                   for n, p in model.named_parameters() if n.endswith(".weight")})
    counts = count(model, masks, example_input=torch.randn(2, 4, 9, 9))
    for name in HAND:
        row, mask = counts.layer(name), masks[f"{name}.weight"]
        kept = int(mask.sum())
        assert row.prunable_kept == kept
        assert row.macs_weight_sparse * mask.numel() == row.macs_dense * kept  # exact, per layer
        assert row.kept == row.params - (mask.numel() - kept)


def test_mask_defines_kept_not_weight_values():
    model = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight.copy_(-torch.ones(3, 4))  # negative weights are kept weights
        model[0].weight[0].zero_()  # zeros without a mask are kept too
    counts = count(model, example_input=torch.randn(2, 4))
    assert counts.prunable_kept == 12 and counts.macs_weight_sparse == 12


def test_activation_density_measured_on_relu_input():
    model = nn.Sequential(nn.ReLU(), nn.Linear(4, 3, bias=False))
    x = torch.tensor([[1.0, -1.0, 2.0, -3.0], [-1.0, -2.0, 0.5, -0.5]])  # 3 of 8 entries survive the ReLU
    counts = count(model, example_input=x)
    row = counts.layer("1")
    assert row.input_density == pytest.approx(3 / 8) and row.density_source == "measured"
    assert row.macs_weight_act_sparse == pytest.approx(12 * 3 / 8)
    given = count(model, example_input=x, activation_density={"1": 0.5})
    assert given.layer("1").macs_weight_act_sparse == pytest.approx(6.0)


def test_network_input_counts_as_dense():
    counts = count(build_model("lenet300"))  # seeded random-normal batch from model.input_shape
    assert counts.layer("fc1").input_density == 1.0
    assert 0.2 < counts.layer("fc2").input_density < 0.8  # after a ReLU


def test_multihead_attention_counted():
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    model = nn.Sequential()
    model.add_module("attn", mha)
    model.forward = lambda x: mha(x, x, x)[0]
    length = 5
    counts = count(model, example_input=torch.randn(2, length, 8))
    assert counts.layer("attn.in_proj").macs_dense == 3 * length * 8 * 8  # q, k, v projections
    assert counts.layer("attn:products").macs_dense == 2 * length * length * 8  # QK^T and AV, all heads
    assert counts.layer("attn.out_proj").macs_dense == length * 8 * 8
    assert counts.params == sum(p.numel() for p in mha.parameters())
    keep = torch.zeros(24, 8, dtype=torch.bool)
    keep[0, :2] = keep[8, :4] = keep[16, :6] = True  # 2 query, 4 key and 6 value weights
    masks = Masks({"attn.in_proj_weight": keep, "attn.out_proj.weight": torch.ones(8, 8, dtype=torch.bool)})
    sparse = count(model, masks, example_input=torch.randn(2, length, 8))
    assert sparse.layer("attn.in_proj").macs_weight_sparse == length * (2 + 4 + 6)
    assert sparse.layer("attn:products").macs_weight_sparse == 2 * length * length * 8  # never pruned


class LinearAttention(nn.Module):
    """Attention written with Linear layers; the products by @, einsum or scaled_dot_product_attention."""

    def __init__(self, style: str):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))
        self.style = style

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.style == "matmul":
            y = (q @ k.transpose(-2, -1)).softmax(-1) @ v
        elif self.style == "einsum":
            y = torch.einsum("blm,bmd->bld", torch.einsum("bld,bmd->blm", q, k).softmax(-1), v)
        else:
            heads = [t.unflatten(-1, (2, 4)).transpose(1, 2) for t in (q, k, v)]
            y = nn.functional.scaled_dot_product_attention(*heads).transpose(1, 2).flatten(2)
        return self.o(y)


@pytest.mark.parametrize("style", ["matmul", "einsum", "sdpa"])
def test_attention_written_as_linear_layers(style):
    counts = count(LinearAttention(style), example_input=torch.randn(3, 5, 8))
    assert counts.layer("(model):products").macs_dense == 2 * 5 * 5 * 8
    assert all(counts.layer(n).macs_dense == 5 * 8 * 8 for n in "qkvo")


def test_layer_types_without_known_macs_are_flagged():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model.add_module("rnn", nn.LSTM(4, 4))
    model.forward = lambda x: model[1](model[0](x))
    counts = count(model, example_input=torch.randn(2, 4))
    assert not counts.layer("rnn").macs_counted and counts.layer("1").macs_counted
    assert any("LSTM" in n for n in counts.notes)
    assert "not counted" in format_counts(counts)


def test_wrong_input_shape_names_expected_and_given():
    model = build_model("lenet5").train()
    with pytest.raises(TicketlabError, match=r"\(2, 1, 32, 32\).*\(batch, 1, 28, 28\)"):
        count(model, example_input=torch.randn(2, 1, 32, 32))
    assert model.training  # mode restored
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())  # hooks removed


def test_transposed_conv_and_shared_weights():
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2))
    counts = count(model, example_input=torch.randn(2, 4, 5, 5))
    assert counts.macs_dense == (4 * 5 * 5) * 6 * 3 * 3  # every input element meets out_channels x kernel
    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, nn.ReLU(), shared)
    counts = count(tied, example_input=torch.randn(2, 3))
    assert counts.params == 12  # the shared layer's parameters once
    assert counts.macs_dense == 2 * 9  # but its work twice


def test_format_and_json():
    model = build_model("lenet300")
    table = load_density_table("lenet300")
    counts = count(model, masks_from_density_table(model, table))
    text = format_counts(counts)
    assert "kept 8.0% (sparsity 92.0%)" in text and "total" in text and "x fewer" in text
    data = counts.to_dict()
    assert data["total"]["params"] == 266_610 and data["layers"][0]["name"] == "fc1"
    assert '"macs_dense": 266200' in counts.to_json()


# -- density tables ------------------------------------------------------------------------------------------------
def test_han_table_shifts_output_density_to_next_layer_input():
    table = load_density_table("alexnet")
    assert list(table) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2", "fc3"]
    assert table["conv1"] == (0.84, 1.0)  # the network input is dense
    assert table["conv2"].input_activation == pytest.approx(0.88)  # act_pct of conv1
    assert table["fc1"] == pytest.approx((0.09, 0.34))  # act_pct of conv5
    assert load_density_table("vgg16") == load_density_table("vgg-16")


def test_user_density_table(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("# my table\nlayer,weights_pct,input_act_pct\nfc1,50,\nfc2,25,40\n")
    assert load_density_table(path) == {"fc1": (0.5, None), "fc2": (0.25, 0.4)}
    path.write_text("layer,weights_pct\nfc1,150\n")
    with pytest.raises(TicketlabError, match=r"weights_pct must be a percentage in \(0, 100\], got '150'"):
        load_density_table(path)
    path.write_text("layer,act_pct\nfc1,50\n")
    with pytest.raises(TicketlabError, match="lacks column"):
        load_density_table(path)
    with pytest.raises(TicketlabError, match="neither a readable CSV"):
        load_density_table(tmp_path / "missing.csv")


def test_density_table_with_unknown_layer_is_an_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("layer,weights_pct\nfc1,10\nfc9,10\n")
    model = build_model("lenet300", device="meta")
    with pytest.raises(TicketlabError, match=r"'fc9'.*model layers: fc1, fc2, fc3"):
        masks_from_density_table(model, load_density_table(path))
    with pytest.raises(TicketlabError, match=r"activation density for 'fc9'"):
        count(build_model("lenet300"), activation_density={"fc9": 0.5})


def test_masks_from_density_table_keep_exact_counts_by_magnitude():
    model = build_model("lenet5")
    table = load_density_table("lenet5")
    masks = masks_from_density_table(model, table)
    params = dict(model.named_parameters())
    for layer, density in table.items():
        mask, weight = masks[f"{layer}.weight"], params[f"{layer}.weight"].detach()
        assert int(mask.sum()) == round_half_up(density.weight * mask.numel())
        assert weight[mask].abs().min() >= weight[~mask].abs().max()  # by |w|: negative weights rank too
    meta = masks_from_density_table(build_model("lenet5", device="meta"), table)
    assert meta.kept() == masks.kept()


# -- invariant: any conv configuration -----------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(groups=st.sampled_from([1, 2]), kernel=st.integers(1, 3), stride=st.integers(1, 3),
       padding=st.integers(0, 2), dilation=st.integers(1, 2), side=st.integers(5, 9), keep=st.floats(0.0, 1.0))
def test_conv_macs_match_formula(groups, kernel, stride, padding, dilation, side, keep):
    conv = nn.Conv2d(4, 6, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)
    out_side = (side + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    model = nn.Sequential(conv)
    mask = torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(1)) < keep
    counts = count(model, Masks({"0.weight": mask}), example_input=torch.randn(2, 4, side, side))
    positions = out_side * out_side
    assert counts.macs_dense == positions * 6 * (4 // groups) * kernel * kernel
    assert counts.macs_weight_sparse == positions * int(mask.sum())
    assert math.isclose(counts.macs_weight_act_sparse, counts.macs_weight_sparse)  # random input: dense
