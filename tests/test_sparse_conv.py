"""Sparse training of stacked Conv2d layers (batching/sparse_conv.py, csrc/sparse_conv.cpp): the direct sparse
convolution against torch's dense convolution of each copy with its masked weight.

Tolerance: outputs and gradients (input, kept values, bias) equal the dense reference within rtol 1e-4 / atol 1e-5
(float32, another summation order), for inputs and upstream gradients scaled by 1/sqrt(the terms each sum has), so
that every sum is O(1) as in a trained network (rounding grows with the sum of the terms' magnitudes); across thread
counts they are equal bit for bit."""

import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab.accel.batching.conv_layout import ConvGeometry
from ticketlab.accel.batching.sparse_conv import (
    SMALL_CONV_CHANNELS,
    SMALL_CONV_MAX_KEPT,
    SPARSE_CONV_MAX_KEPT,
    SparseConvWeight,
    kernel,
    trains_sparse_conv,
)
from ticketlab.errors import TicketlabError

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def built():
    """The kernel, else a skip; a failure where it should have built (a C++ compiler is here, and
    TICKETLAB_NO_COMPILE is not set)."""
    if kernel() is None:
        if shutil.which("c++") and os.environ.get("TICKETLAB_NO_COMPILE") != "1":
            pytest.fail("a C++ compiler is here but the sparse convolution kernel did not build")
        pytest.skip("no C++ compiler: the sparse convolution kernel cannot be built here")
    return kernel()


def run(h, w, masks, b, stride, padding, dilation, relu=False, pool=False):
    """Output and gradients (input, kept values, bias) of the sparse layer and of the dense per-copy reference (with
    the ReLU after it if `relu`, then a 2x2 max-pool if `pool`: fused into the kernel), under the same non-uniform
    upstream gradient (inputs and upstream scaled: see the module's docstring)."""
    h = h / w[0].numel() ** 0.5 * w.shape[1] ** 0.5
    weight = SparseConvWeight(w * masks, masks, stride, padding, dilation)
    hs, bs = h.clone().requires_grad_(True), None if b is None else b.clone().requires_grad_(True)
    y = weight(hs, bs, relu, pool)
    hd, wd = h.clone().requires_grad_(True), (w * masks).requires_grad_(True)
    bd = None if b is None else b.clone().requires_grad_(True)
    ref = torch.stack([F.conv2d(hd[k], wd[k], None if bd is None else bd[k], stride, padding, dilation)
                       for k in range(w.shape[0])])
    ref = F.relu(ref) if relu else ref
    ref = F.max_pool2d(ref.flatten(0, 1), 2).unflatten(0, ref.shape[:2]) if pool else ref
    upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1)) / ref[0, :, 0].numel() ** 0.5
    y.backward(upstream)
    ref.backward(upstream)
    sparse = (y, hs.grad, weight.values.grad, None if b is None else bs.grad)
    dense = (ref, hd.grad, wd.grad[masks], None if b is None else bd.grad)
    return sparse, dense, weight


def check(sparse, dense):
    for got, want in zip(sparse, dense, strict=True):
        if want is not None:
            torch.testing.assert_close(got, want, **TOLERANCE)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 3), batch=st.integers(1, 9), c=st.integers(1, 6), o=st.integers(1, 6),
       height=st.sampled_from([1, 2, 3, 5, 7, 8, 11, 16]), width=st.sampled_from([1, 2, 4, 5, 8, 9, 13, 16, 32]),
       size=st.sampled_from([1, 3, 5]), stride=st.integers(1, 2), padding=st.integers(0, 2),
       dilation=st.integers(1, 2), kept=st.floats(0.0, 1.0), bias=st.booleans(),
       fused=st.sampled_from(["", "relu", "relu+pool"]), seed=st.integers(0, 2**16))
def test_sparse_conv_equals_the_dense_masked_convolution_of_each_copy(built, k, batch, c, o, height, width, size,
                                                                      stride, padding, dilation, kept, bias, fused,
                                                                      seed):
    """Any shape (odd sizes, widths dividing 32: the compact layout where its chunks are whole rows), kernel 1/3/5,
    stride 1/2, padding 0..2, dilation 1/2, any density (copies and rows with nothing kept), with and without bias,
    with and without the ReLU (and 2x2 max-pool: odd sizes drop a row and column) after it fused in."""
    reach = dilation * (size - 1) + 1
    out = [(n + 2 * padding - reach) // stride + 1 for n in (height, width)]
    assume(min(out) >= (2 if "pool" in fused else 1))
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(k, o, c, size, size, generator=g) < kept
    w = torch.randn(k, o, c, size, size, generator=g)
    b = torch.randn(k, o, generator=g) if bias else None
    h = torch.randn(k, batch, c, height, width, generator=g)
    sparse, dense, weight = run(h, w, masks, b, stride, padding, dilation, "relu" in fused, "pool" in fused)
    assert weight.values.numel() == int(masks.sum()) and weight.counts == masks.flatten(1).sum(1).tolist()
    check(sparse, dense)


@pytest.mark.parametrize("height,width", [(4, 32), (5, 9), (6, 48)])
def test_fused_max_pool_breaks_ties_and_nans_as_torch(built, height, width):
    """Windows with equal maxima go to the first, a NaN wins its window, as torch's max_pool2d picks them: outputs and
    the input gradients routed through the choices equal torch's (a 1x1 convolution of weight 1 keeps the ties
    exact), 16 windows at a time and in odd-sized tails."""
    g = torch.Generator().manual_seed(height * width)
    h = torch.randint(-1, 3, (1, 3, 1, height, width), generator=g).float()  # few values: many ties
    h[torch.rand(h.shape, generator=g) < 0.05] = float("nan")
    ones = torch.ones(1, 1, 1, 1, 1, dtype=torch.bool)
    sparse, dense, _ = run(h, ones.float(), ones, None, 1, 0, 1, relu=True, pool=True)
    assert sparse[0].isnan().any() and (sparse[0] == 0).any()
    for got, want in zip(sparse[:2], dense[:2], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's, about its own copy
@pytest.mark.parametrize("shape", [
    (8, 3, 1, 1, 1), (16, 3, 1, 1, 1), (8, 5, 2, 1, 1), (8, 3, 2, 2, 1),  # compact: rows dividing 32, as wide as in
    (32, 3, 1, 1, 1), (32, 5, 2, 1, 1),  # compact, rows of two vectors (their lanes masked apart) in chunks
    (20, 3, 1, 1, 1), (12, 4, "same", 1, 1), (9, 3, 1, 2, 1),  # several chunks a plane; an even 'same'; dilated
    (37, 3, 1, 1, 2), (36, 1, 0, 1, 2),  # stride 2: rows of more than 16 per phase; a 1x1 kernel reads one phase
])
def test_layouts_with_several_blocks_and_chunks(built, shape):
    """Planes long enough for several chunks, channels enough for several blocks of entries per row; the compact
    layout (masked lanes instead of padding columns) wherever it applies."""
    size, kernel_size, padding, dilation, stride = shape
    g = torch.Generator().manual_seed(size)
    masks = torch.rand(2, 6, 96, kernel_size, kernel_size, generator=g) < 0.5
    w, b = torch.randn(masks.shape, generator=g), torch.randn(2, 6, generator=g)
    h = torch.randn(2, 3, 96, size, size, generator=g)
    sparse, dense, weight = run(h, w, masks, b, stride, padding, dilation, relu=size % 2 == 0 or size % 3 == 0,
                                pool=size % 3 == 0)
    check(sparse, dense)
    layout = weight.layout(size, size)
    assert layout.blocks > 1 and (size < 20 or layout.padded > built.chunk_length(layout.length))
    assert layout.compact == (built.masked_loads() and 32 % size == 0)
    assert layout.phases == (1 if kernel_size == 1 else 2 ** (stride * stride) - 1)


def test_numbers_do_not_depend_on_the_thread_count(built):
    """One thread or two: the same output and gradients, bit for bit (each element summed by one thread, in the
    entries' order)."""
    threads = torch.get_num_threads()
    for size, stride in ((12, 1), (8, 1), (11, 2)):
        g = torch.Generator().manual_seed(size)
        masks = torch.rand(2, 10, 9, 3, 3, generator=g) < 0.3
        w, b = torch.randn(masks.shape, generator=g), torch.randn(2, 10, generator=g)
        h = torch.randn(2, 7, 9, size, size, generator=g)
        results = []
        try:
            for n in (1, 2):
                torch.set_num_threads(n)
                results.append(run(h, w, masks, b, stride, 1, 1, relu=True, pool=size == 12)[0])
        finally:
            torch.set_num_threads(threads)
        for one, two in zip(*results, strict=True):
            assert torch.equal(one, two)


def test_copies_round_trip_through_the_dense_weight(built):
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 4, 5, 3, 3, generator=g) < 0.4
    masks[1] = False  # a copy keeping nothing
    dense = torch.randn(masks.shape, generator=g) * masks
    weight = SparseConvWeight(dense, masks, 1, 1, 1)
    out = torch.zeros_like(dense)
    weight.write_dense(out)
    assert torch.equal(out, dense)
    for k in range(3):
        assert torch.equal(weight.copies()[k], dense[k].reshape(-1)[weight.copy_index(k)])
        assert torch.equal(weight.copy_index(k), masks[k].reshape(-1).nonzero().squeeze(1))


def test_which_convolutions_train_sparse(built):
    masks = torch.rand(2, 8, 4, 3, 3) < 0.05
    weight = torch.zeros(masks.shape)
    assert trains_sparse_conv(nn.Conv2d(4, 8, 3, padding=1), weight, masks)
    assert not trains_sparse_conv(nn.Conv2d(4, 8, 3, padding=1), weight, torch.ones_like(masks))  # dense
    assert not trains_sparse_conv(nn.Conv2d(4, 8, 3, groups=2), weight[:, :, :2], masks[:, :, :2])
    assert not trains_sparse_conv(nn.Conv2d(4, 8, 3, padding=1, padding_mode="reflect"), weight, masks)
    assert not trains_sparse_conv(nn.Conv2d(4, 8, 3), weight.double(), masks)
    assert 0 < SPARSE_CONV_MAX_KEPT < SMALL_CONV_MAX_KEPT < 1
    wide, narrow = nn.Conv2d(64, 8, 3), nn.Conv2d(SMALL_CONV_CHANNELS, 8, 3)  # the threshold follows the channels
    for module, most in ((wide, SPARSE_CONV_MAX_KEPT), (narrow, SMALL_CONV_MAX_KEPT)):
        shape = (2, 8, module.in_channels, 3, 3)
        under, over = (torch.arange(9).expand(*shape[:3], 9).reshape(shape) < 9 * most + d for d in (-1, 1))
        assert trains_sparse_conv(module, torch.zeros(shape), under)
        assert not trains_sparse_conv(module, torch.zeros(shape), over)
    for bad in ("full", -1, (1, 2, 3)):
        with pytest.raises(TicketlabError, match="padding"):
            ConvGeometry((8, 4, 3, 3), 1, bad, 1)
    with pytest.raises(TicketlabError, match="'same' with stride"):
        ConvGeometry((8, 4, 3, 3), 2, "same", 1)


def test_a_layout_whose_reads_would_leave_a_sample_is_refused(built):
    """The kernel trusts the offsets; the layout checks them once (Layout.check_reads)."""
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(2, 4, 3, 3, 3, generator=g) < 0.5
    weight = SparseConvWeight(torch.randn(2, 4, 3, 3, 3, generator=g) * masks, masks, 1, 1)
    layout = weight.layout(8, 8)
    layout.check_reads()  # as made: inside
    layout.off = layout.off + layout.hq * layout.wq * 3  # past the last of the 3 planes
    with pytest.raises(RuntimeError, match="reads outside the sample"):
        layout.check_reads()
