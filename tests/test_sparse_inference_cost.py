"""Sparse inference's costs and limits: the CSR conversion equals torch's, timing long calls is bounded, and a conv
stays dense where sparse was slower."""

import pytest
import torch
from torch import nn

from ticketlab.deploy.sparse_inference import SparseConv2d, SparseLinear, layer_choices, sparsify

from .test_sparse_inference import assert_close_relative, patch_everywhere, pruned


@pytest.mark.parametrize("build", ["numba", "torch"])
@pytest.mark.parametrize(("rows", "cols", "density"), [(70, 300, 0.1), (5, 3, 0.5), (4, 6, 0.0), (33, 1, 1.0)])
def test_csr_arrays_equal_torchs_to_sparse_csr_of_the_masked_weight(rows, cols, density, build, monkeypatch):
    import warnings

    from ticketlab.deploy.sparse_inference import CSRWeight
    from ticketlab.deploy.sparse_inference import csr as csr_module

    if build == "torch":
        monkeypatch.setattr(csr_module, "_numba_parts", csr_module._torch_parts)
    g = torch.Generator().manual_seed(rows)
    weight = torch.randn(rows, cols, generator=g)  # no exact zeros: torch's CSR then holds exactly the kept weights
    mask = torch.rand(rows, cols, generator=g) < density
    mask[0] = False  # an empty row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = (weight * mask).to_sparse_csr()
    original = weight.clone()
    csr = CSRWeight(weight, mask, None)
    assert torch.equal(weight, original)  # left alone unless asked
    assert torch.equal(csr.indptr, expected.crow_indices().to(torch.int32))
    assert torch.equal(csr.indices, expected.col_indices().to(torch.int32))
    assert torch.equal(csr.values, expected.values())
    assert csr.indptr.dtype == csr.indices.dtype == torch.int32
    zeroed = CSRWeight(weight, mask, None, zero_pruned=True)
    assert torch.equal(weight, original * mask) and torch.equal(zeroed.values, csr.values)


def test_time_calls_bounds_the_calls_of_long_functions():
    import time

    from ticketlab.deploy.sparse_inference import time_calls

    counts = {"long": 0, "short": 0}

    def long():
        counts["long"] += 1
        time.sleep(0.01)

    def short():
        counts["short"] += 1

    seconds = time_calls({"long": long}, min_time=0.001)
    assert counts["long"] == 1 and seconds["long"] >= 0.01  # seven rounds would take 70x min_time: the first call
    seconds = time_calls({"short": short}, min_time=0.001)
    assert counts["short"] >= 7 and 0 < seconds["short"] < 0.001  # short ones: calibrated rounds as before


def test_a_conv_stays_dense_where_sparse_was_slower(monkeypatch):
    model, masks = pruned("lenet5", 0.1)

    def fake_timing(layer, x, kernels, min_time=0.05, rounds=7):  # im2col loses on convs, CSR wins on linears
        return {k: 1.0 if k == "dense" else (2.0 if isinstance(layer, SparseConv2d) else 0.1) for k in kernels}

    patch_everywhere(monkeypatch, "time_kernels", fake_timing)
    fast = sparsify(model, masks, batch_sizes=(1,), check_model=False, fuse=False)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(fast.get_submodule(n)) is nn.Conv2d for n in convs)
    assert any(isinstance(m, SparseLinear) for m in fast.modules())
    assert {c.kernel for c in layer_choices(fast) if c.name in convs} == {"dense"}
    x = torch.randn(1, *model.input_shape)
    with torch.no_grad():
        assert_close_relative(fast(x), model(x))
