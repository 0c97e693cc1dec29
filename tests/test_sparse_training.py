"""Sparse training of stacked Linear layers (batching/sparse_linear.py): the CSR kernel against the dense batched
matmul, and the optimizer state of kept entries as checkpoints hold it."""

import os
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketlab.accel.batching.batched_layers import BatchedLinear
from ticketlab.accel.batching.sparse_linear import SparseWeight, kernel


def sparse_kernel_or_fail():
    """The sparse kernel, or None; a failure where it should have built (a C++ compiler is here, and
    TICKETLAB_NO_COMPILE is not set)."""
    if shutil.which("c++") and os.environ.get("TICKETLAB_NO_COMPILE") != "1" and kernel() is None:
        pytest.fail("a C++ compiler is here but the sparse training kernel did not build")
    return kernel()


def dense_reference(h, w, b, masks, shared):
    """Output and gradients of the dense batched layer with masked weights (gradients at kept entries only)."""
    h = h.detach().requires_grad_(not shared)
    w = (w * masks).detach().requires_grad_(True)
    b = None if b is None else b.detach().requires_grad_(True)
    y = BatchedLinear.apply(h.expand(w.shape[0], *h.shape) if shared else h, w, b)
    if not shared:
        (y.sin().sum()).backward()  # a non-uniform upstream gradient
    return y.detach(), (None if shared else h.grad), w.grad, (None if b is None or shared else b.grad)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 3), batch=st.integers(1, 80), features=st.integers(1, 40), out=st.integers(1, 20),
       kept=st.floats(0.0, 1.0), bias=st.booleans(), shared=st.booleans(), seed=st.integers(0, 2**16))
def test_sparse_linear_equals_the_dense_batched_layer(k, batch, features, out, kept, bias, shared, seed):
    """Any shape (batches past one register block of 64 and with tails), any density (rows with nothing kept),
    with and without bias, per-copy or shared input: outputs and the gradients of input, kept values and bias."""
    if sparse_kernel_or_fail() is None:
        pytest.skip("no C++ compiler: the sparse kernel cannot be built here")
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(k, out, features, generator=g) < kept
    w = torch.randn(k, out, features, generator=g)
    b = torch.randn(k, out, generator=g) if bias else None
    h = torch.randn(*(() if shared else (k,)), batch, features, generator=g)
    y_ref, dh_ref, dw_ref, db_ref = dense_reference(h, w, b, masks, shared)

    weight = SparseWeight(w * masks, masks)
    assert weight.values.numel() == int(masks.sum())
    h = h.clone().requires_grad_(not shared)
    bias_leaf = None if b is None else b.clone().requires_grad_(True)
    y = weight(h, bias_leaf, shared)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    if shared:
        return
    y.sin().sum().backward()
    torch.testing.assert_close(h.grad, dh_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weight.values.grad, dw_ref[masks], atol=1e-5, rtol=1e-5)
    if b is not None:
        torch.testing.assert_close(bias_leaf.grad, db_ref, atol=1e-5, rtol=1e-5)
    dense = torch.zeros(k, out, features)
    weight.write_dense(dense)
    assert torch.equal(dense, w * masks)
    for c in range(k):  # each copy's kept entries, as positions in its own weight
        assert torch.equal(weight.copies()[c], (w[c] * masks[c]).reshape(-1)[weight.copy_index(c)])


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 3), batch=st.integers(1, 70), out=st.integers(1, 20), kept=st.floats(0.0, 1.0),
       shared=st.booleans(), seed=st.integers(0, 2**16))
def test_a_fused_relu_is_torchs_relu_bit_for_bit(k, batch, out, kept, shared, seed):
    """`relu=True` (the ReLU after a sparse layer fused into the kernel) against the layer and then torch.relu:
    the same output bits and, backward, the same gradient bits of input, kept values and bias (zeros in the
    output included: torch passes no gradient there)."""
    if sparse_kernel_or_fail() is None:
        pytest.skip("no C++ compiler: the sparse kernel cannot be built here")
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(k, out, 17, generator=g) < kept
    w, b = torch.randn(k, out, 17, generator=g) * masks, torch.randn(k, out, generator=g)
    h = torch.randn(*(() if shared else (k,)), batch, 17, generator=g)
    h[..., :3] = 0  # exact zeros in the output where a row keeps only these columns
    upstream = torch.randn(k, batch, out, generator=g)
    results = []
    for fused in (True, False):
        weight, bias, x = SparseWeight(w, masks), b.clone().requires_grad_(True), h.clone().requires_grad_(not shared)
        y = weight(x, bias, shared, relu=True) if fused else torch.relu(weight(x, bias, shared))
        if not shared:
            (y * upstream).sum().backward()
        results.append([y.detach(), *([] if shared else [x.grad, weight.values.grad, bias.grad])])
    for ours, theirs in zip(*results, strict=True):
        assert torch.equal(ours.view(torch.int32), theirs.view(torch.int32))


@settings(max_examples=15, deadline=None)
@given(optimizer=st.sampled_from(["adam", "adamw"]), bias=st.booleans(), k=st.integers(1, 3), out=st.integers(1, 40),
       kept=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
def test_the_step_in_backward_is_torchs_fused_step_bit_for_bit(optimizer, bias, k, out, kept, seed):
    """A sparse layer stepping its values and bias in the backward pass (step_in_backward.py) against gradients
    first and torch's fused Adam/AdamW after: the same weight, moment and input-gradient bits over 3 steps, whatever
    the sizes (the step's scalar tails included)."""
    from ticketlab.accel.batching.step_in_backward import StepInBackward
    from ticketlab.engine.config import TrainConfig
    from ticketlab.engine.optimizers import make_optimizer

    if sparse_kernel_or_fail() is None:
        pytest.skip("no C++ compiler: the sparse kernel cannot be built here")
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(k, out, 23, generator=g) < kept
    w, b = torch.randn(k, out, 23, generator=g) * masks, torch.randn(k, out, generator=g)
    cfg = TrainConfig(optimizer=optimizer, lr=1e-2, weight_decay=1e-2)
    layers = []
    for fused in (False, True):
        weight, bias_leaf = SparseWeight(w, masks), b.clone().requires_grad_(True) if bias else None
        opt = make_optimizer([p for p in (weight.values, bias_leaf) if p is not None], cfg)
        if fused:
            weight.step = StepInBackward(opt, adamw=optimizer == "adamw")
        layers.append((weight, bias_leaf, opt))
    for _ in range(3):
        h = torch.randn(k, 19, 23, generator=g)
        grads = []
        for weight, bias_leaf, opt in layers:
            x = h.clone().requires_grad_(True)
            weight(x, bias_leaf).sin().sum().backward()
            if weight.step is None:
                opt.step()
                opt.zero_grad()
            else:  # stepped already: nothing left for the optimizer
                assert weight.values.grad is None and (bias_leaf is None or bias_leaf.grad is None)
            grads.append(x.grad)
        assert torch.equal(grads[0], grads[1])  # the input's gradient from the weights before the step
    (w0, b0, opt0), (w1, b1, opt1) = layers
    assert torch.equal(w0.values.detach().view(torch.int32), w1.values.detach().view(torch.int32))
    assert b0 is None or torch.equal(b0.detach().view(torch.int32), b1.detach().view(torch.int32))
    for p0, p1 in zip(opt0.param_groups[0]["params"], opt1.param_groups[0]["params"], strict=True):
        s0, s1 = opt0.state[p0], opt1.state[p1]
        assert all(torch.equal(s0[key], s1[key]) for key in ("step", "exp_avg", "exp_avg_sq"))


def test_sparse_checkpoints_hold_optimizer_state_in_the_weights_shapes(tmp_path, monkeypatch):
    """A sparse group's checkpoint is the one `train` writes: moments shaped as the weights, zero where pruned, so
    the stage can resume alone."""
    from ticketlab.accel.batching import train_batched
    from ticketlab.accel.batching.trainer import BatchedRun
    from ticketlab.core.files import load_tensors
    from ticketlab.engine.config import TrainConfig
    from ticketlab.engine.training import train

    from .test_batched import SPARSE_RATES, tickets_for

    if sparse_kernel_or_fail() is None:
        pytest.skip("no C++ compiler: the sparse kernel cannot be built here")
    cfg = TrainConfig(steps="8it", optimizer="adam", lr=1e-3, eval_every="4it", checkpoint_every="4it")
    tickets = tickets_for("mlp", tmp_path, cfg, k=2, rates=SPARSE_RATES)
    log = BatchedRun.log

    def killed_at_step_8(run, *args):
        if run.step == 8:
            raise KeyboardInterrupt  # after the checkpoint at step 4, before the final one
        log(run, *args)

    monkeypatch.setattr(BatchedRun, "log", killed_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        train_batched(tickets, cfg)
    for t in tickets:
        tensors, _ = load_tensors(t.stage / "checkpoint.safetensors")
        for j, (name, p) in enumerate(t.model.named_parameters()):
            moment = tensors[f"opt.{j}.exp_avg_sq"]
            assert moment.shape == p.shape
            if name in t.masks:
                assert (moment[~t.masks[name]] == 0).all() and (moment[t.masks[name]] != 0).any()
        rows = train(t.model, t.masks, t.splits, cfg, t.plan, t.stage)  # resumes alone from step 4
        assert [r["step"] for r in rows] == [0, 4, 8]


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 50), features=st.integers(1, 40), copies=st.integers(1, 4), b=st.integers(0, 40),
       seed=st.integers(0, 2**16))
def test_gather_feature_major_is_the_rows_transposed(n, features, copies, b, seed):
    if sparse_kernel_or_fail() is None:
        pytest.skip("no C++ compiler: the sparse kernel cannot be built here")
    g = torch.Generator().manual_seed(seed)
    x, index = torch.randn(n, features, generator=g), torch.randint(0, n, (copies * b,), generator=g)
    out = kernel().gather_feature_major(x, index, copies)
    assert out.shape == (copies, features, -(-b // 16) * 16)  # each copy's slice padded to whole cache lines
    assert torch.equal(out[..., :b], x[index].view(copies, b, features).transpose(1, 2))
    with pytest.raises(RuntimeError, match="out of range"):
        kernel().gather_feature_major(x, torch.tensor([n]), 1)
