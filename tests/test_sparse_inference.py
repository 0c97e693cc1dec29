"""Fast sparse inference: every kernel equals dense (1e-5 relative), the plan follows the measurement, fallbacks."""

import pytest
import torch
from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.deploy.sparse_inference import (
    SparseConv2d,
    SparseLinear,
    available_kernels,
    format_choices,
    layer_choices,
    layers,
    sparsify,
)
from ticketlab.deploy.sparse_inference.layers import direct_kernel
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model

SPARSE = [k for k in available_kernels() if k != "dense"]


def assert_close_relative(got, expected):
    """Equal within 1e-5 of the output's scale (summation order differs between kernels)."""
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-5 * scale, (got - expected).abs().max()


def patch_everywhere(monkeypatch, name, fake):
    """Replace the function `name` in every sparse_inference module that calls it: each imports it by name, so
    patching the package attribute alone would not reach them."""
    from ticketlab.deploy.sparse_inference import convert, fusing, timing, whole_model

    for module in (convert, fusing, timing, whole_model):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, fake)


def pruned(name: str, density: float, seed: int = 0):
    model = build_model(name, seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
    masks = prune(model, Masks.ones(model), PruneSpec(rate=1 - density))
    masks.apply(model)
    return model, masks


@pytest.mark.parametrize("kernel", SPARSE)
@pytest.mark.parametrize("batch", [1, 5, 64])
def test_sparse_linear_equals_dense(kernel, batch):
    torch.manual_seed(0)
    linear = nn.Linear(300, 70)
    mask = torch.rand(70, 300) < 0.1
    mask[3] = False  # an empty row: bias only
    with torch.no_grad():
        linear.weight.mul_(mask)
    layer = SparseLinear(linear, mask)
    layer.plan = {batch: kernel}
    x = torch.randn(batch, 300)
    with torch.no_grad():
        assert_close_relative(layer(x), linear(x))
        transposed = torch.randn(300, batch).t()  # what a previous sparse layer returns: a transposed view
        assert_close_relative(layer(transposed), linear(transposed))
        assert_close_relative(layer(x.reshape(batch, 1, 300)), linear(x.reshape(batch, 1, 300)))


def needs_direct(kernel: str) -> None:
    if kernel == "direct" and direct_kernel() is None:
        pytest.skip("the sparse convolution kernel is not built here (TICKETLAB_NO_COMPILE=1 or no compiler)")


@pytest.mark.parametrize("kernel", [*SPARSE, "direct"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("stride", "size", "bias"), [(2, (9, 11), True), (1, (8, 16), False)])
def test_sparse_conv_equals_dense(kernel, batch, stride, size, bias):
    """Stride 2 on an odd size, and stride 1 on rows 16 wide (the direct kernel's compact layout), with and without
    bias; two input sizes through one layer (the direct kernel lays out each size once)."""
    needs_direct(kernel)
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, stride=stride, padding=1, dilation=1, bias=bias)
    mask = torch.rand(conv.weight.shape) < 0.2
    with torch.no_grad():
        conv.weight.mul_(mask)
    layer = SparseConv2d(conv, mask)
    layer.plan = {batch: kernel}
    with torch.no_grad():
        for height, width in (size, (size[0] + 3, size[1])):
            x = torch.randn(batch, 5, height, width)
            assert_close_relative(layer(x), conv(x))


def test_the_direct_kernel_is_a_candidate_for_convolutions_only_where_built(monkeypatch):
    model, masks = pruned("lenet5", 0.1)
    fast = sparsify(model, masks, batch_sizes=(1,), min_time=0.001, check_model=False)
    timed = {c.name: set(c.timings) for c in layer_choices(fast)}
    built = direct_kernel() is not None
    assert all(("direct" in kernels) == (built and name.startswith("conv")) for name, kernels in timed.items()), timed
    monkeypatch.setattr(layers, "direct_kernel", lambda: None)
    fast = sparsify(model, masks, batch_sizes=(1,), min_time=0.001, check_model=False)
    assert not any("direct" in c.timings for c in layer_choices(fast))


@pytest.mark.parametrize(("name", "density"), [("lenet300", 0.1), ("lenet300", 0.02), ("conv2", 0.05), ("lenet5", 0.1),
                                               ("resnet20", 0.1)])
def test_sparsified_models_equal_dense_on_random_inputs(name, density):
    model, masks = pruned(name, density)
    fast = sparsify(model, masks, batch_sizes=(1, 4), min_time=0.001, check_model=False)
    g = torch.Generator().manual_seed(1)
    for batch in (1, 2, 4, 40):
        x = torch.randn(batch, *model.input_shape, generator=g)
        with torch.no_grad():
            assert_close_relative(fast(x), model(x))
    choices = layer_choices(fast)
    assert {c.batch for c in choices} == {1, 4}
    assert all(c.kernel == "dense" or c.best_seconds * 1.05 < c.dense_seconds for c in choices)
    assert "speedup" in format_choices(choices)


def test_the_plan_follows_the_measurement(monkeypatch):
    model, masks = pruned("lenet300", 0.05)

    def fake_timing(layer, x, kernels, min_time=0.05, rounds=7):  # sparse wins at batch 1 only
        slow = x.shape[0] > 1
        return {k: (1.0 if k == "dense" else (2.0 if slow else 0.1)) for k in kernels}

    patch_everywhere(monkeypatch, "time_kernels", fake_timing)
    fast = sparsify(model, masks, batch_sizes=(1, 64), check_model=False, fuse=False)
    assert isinstance(fast.fc1, SparseLinear) and fast.fc1.plan[1] != "dense" and fast.fc1.plan[64] == "dense"
    x = torch.randn(2, 1, 28, 28)
    assert fast.fc1.kernel_for(x, 1) != "dense"
    assert fast.fc1.kernel_for(x, 5) != "dense"  # nearer 1 than 64 in log scale
    assert fast.fc1.kernel_for(x, 16) == "dense"  # nearer 64
    assert fast.fc1.kernel_for(x.requires_grad_(), 1) == "dense"  # autograd: the dense path
    patch_everywhere(monkeypatch, "time_kernels", lambda layer, x, kernels, *a, **k: {k: 1.0 for k in kernels})
    unchanged = sparsify(model, masks, fuse=False)
    assert not any(isinstance(m, SparseLinear) for m in unchanged.modules())  # a tie is not a win
    assert type(unchanged.fc1) is nn.Linear


@pytest.mark.parametrize("sparse_seconds", [2.0, 0.97])  # a loss, and a win within the 5% margin (noise)
def test_the_whole_model_check_reverts_a_loss_end_to_end(monkeypatch, sparse_seconds):
    model, masks = pruned("lenet300", 0.05)
    patch_everywhere(monkeypatch, "time_kernels", lambda layer, x, kernels, *a, **k: {k: 1.0 if k == "dense" else 0.5
                                                                                      for k in kernels})
    patch_everywhere(monkeypatch, "time_calls", lambda functions, *a, **k: {n: sparse_seconds if n == "sparse" else 1.0
                                                                             for n in functions})
    fast = sparsify(model, masks, batch_sizes=(1, 8))
    assert not any(isinstance(m, SparseLinear) for m in fast.modules())
    assert fast.sparse_model_timings == {1: (1.0, sparse_seconds), 8: (1.0, sparse_seconds)}
    assert {c.kernel for c in layer_choices(fast)} == {"dense"}


def test_original_model_untouched_and_default_masks_from_zeros():
    model, masks = pruned("lenet300", 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = sparsify(model, batch_sizes=(1,), min_time=0.002)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert {c.name for c in layer_choices(fast)} == {"fc1", "fc2", "fc3"}
    assert [c.density for c in layer_choices(fast)] == pytest.approx(list(masks.densities().values()))


def test_bad_arguments():
    model, masks = pruned("lenet300", 0.1)
    with pytest.raises(TicketlabError, match="batch_sizes must be positive integers"):
        sparsify(model, masks, batch_sizes=(0,))
    with pytest.raises(TicketlabError, match="unknown or unavailable kernel 'cuda'"):
        sparsify(model, masks, kernels=["cuda"])


def test_benchmark_rows_measure_models_against_dense():
    from ticketlab.bench import format_inference, inference_rows

    def small():
        model = build_model("mlp", num_classes=10, hidden=(64,), input_shape=(32,), seed=0).eval()
        return model

    model_rows, layer_rows = inference_rows({"mlp": small}, densities=(0.1,), batches=(1, 4), min_time=0.002)
    assert [(r["density"], r["batch"]) for r in model_rows] == [(0.1, 1), (0.1, 4)]
    assert all(r["dense"] > 0 and r["sparse"] > 0 for r in model_rows)
    assert {r["layer"] for r in layer_rows} == {"fc1", "fc2"}
    table = format_inference(model_rows, layer_rows)
    assert "threads" in table and "kept 10.0% (sparsity 90.0%)" in table and "ours/torch" in table
    header = next(line for line in table.splitlines() if line.endswith("chosen"))
    assert "direct" not in header.split()  # no convolution timed it


def test_benchmark_rows_of_a_conv_model_time_the_direct_kernel():
    """What `benchmarks/sparse_inference.py --conv` runs, on LeNet-5: the direct kernel has its column."""
    from ticketlab.bench import format_inference, inference_rows
    from ticketlab.bench.workloads import zoo

    needs_direct("direct")
    model_rows, layer_rows = inference_rows({"lenet5": zoo("lenet5")}, densities=(0.1,), batches=(1,), min_time=0.002)
    conv_rows = [r for r in layer_rows if r["layer"].startswith("conv")]
    assert len(conv_rows) == 2 and all(r["direct"] > 0 for r in conv_rows)
    assert all(r["direct"] != r["direct"] for r in layer_rows if r["layer"].startswith("fc"))  # NaN: not a candidate
    table = format_inference(model_rows, layer_rows, conv=True)
    header = next(line for line in table.splitlines() if line.endswith("chosen"))
    assert "direct" in header.split()
    assert "target: never slower than dense" in table and ">= 1x" in table and ">= 2x" not in table


def test_bench_training_sections_time_both_sides_and_print_the_targets():
    """The batching and masked-training sections of `ticketlab bench`, tiny: every repeat times both sides."""
    from ticketlab.bench import (
        batching_times,
        format_batching,
        format_masked_training,
        masked_training_times,
    )

    times = batching_times(k=2, steps=3, repeats=2)
    assert [len(times[n]) for n in ("sequential", "batched", "batched-dense")] == [2, 2, 2]
    assert all(wall > 0 and cpu > 0 for runs in times.values() for wall, cpu in runs)
    table = format_batching(times, 2, 3, peak_gflops=100.0)
    assert "batched (sparse kernels)" in table and "dense layers only" in table and "target: batched >= 3.5x" in table
    assert "GFLOP/s achieved" in table and table.count("vs sequential ") == 2 and "noise" in table
    times = masked_training_times(steps=3, repeats=2)
    assert set(times) == {"dense", "masked", "torch-prune"}
    assert all(len(runs) == 2 and all(r > 0 for pair in runs for r in pair) for runs in times.values())
    table = format_masked_training(times, 3)
    assert "masked time / dense time" in table and "torch-prune time / dense time" in table
    assert "target masked overhead <= 5%: " in table


def test_batching_table_gives_the_median_ratio_its_range_and_noise():
    from ticketlab.bench import format_batching

    times = {"sequential": [(4.0, 8.0), (6.0, 12.0)], "batched": [(1.0, 2.0), (2.0, 4.0)],
             "batched-dense": [(4.0, 8.0), (3.0, 6.0)]}
    table = format_batching(times, 8, 300)
    rows = {line[:30].strip(): line for line in table.splitlines()}
    assert "vs sequential 3.50x (3.00-4.00, noise ±47.1%)" in rows["batched (sparse kernels)"]
    assert "vs sequential 1.50x (1.00-2.00, noise ±28.3%)" in rows["batched, dense layers only"]
    assert "target batched >= 3.5x: no verdict: too noisy" in table  # 3.5x measured, but +-47% between repeats


def test_bench_command(tmp_path, capsys):
    from .conftest import assert_user_error, main_in_process, run_cli

    result = run_cli("bench", "--quick", "--only", "export")
    assert result.returncode == 0, result.stderr
    assert "vs floor" in result.stdout and "lenet300" in result.stdout
    assert "threads" in result.stdout and "load average" in result.stdout
    # the refusal through the command's main() in this process (its real command line: above)
    assert_user_error(main_in_process(capsys, "bench", "--threads", "-1"), "--threads", "-1")


def test_fused_chain_equals_the_modules_it_replaces():
    from collections import OrderedDict

    from ticketlab.deploy.sparse_inference import FusedChain

    model, masks = pruned("lenet300", 0.05)
    names = ["fc1", "relu_fc1", "fc2", "relu_fc2", "fc3"]
    layers = nn.Sequential(OrderedDict((n, getattr(model, n)) for n in names))
    local = {n: masks[f"{n}.weight"] for n in ("fc1", "fc2", "fc3")}
    with torch.no_grad():
        for dense in (frozenset(), frozenset({"fc1"}), frozenset({"fc1", "fc2", "fc3"})):  # CSR or dense per layer
            chain = FusedChain(layers, local, dense=dense)
            for batch in (1, 3):
                x = torch.randn(batch, 784)
                assert_close_relative(chain(x), layers(x))
        with_flatten = nn.Sequential(OrderedDict([("flatten", model.flatten), *layers.named_children()]))
        chain = FusedChain(with_flatten, local)
        for x in (torch.randn(1, 1, 28, 28), torch.randn(1, 28, 28, 1).transpose(1, 3), torch.randn(2, 1, 28, 28)):
            assert_close_relative(chain(x), with_flatten(x))  # a leading Flatten, also of a non-contiguous input
        x = torch.randn(1, 1, 28, 28, requires_grad=True)  # no grad mode: the compiled call takes it
        assert_close_relative(chain(x), with_flatten(x))
    x = torch.randn(1, 784, requires_grad=True)  # grad mode: the modules, so the gradient flows
    FusedChain(layers, local)(x).sum().backward()
    assert x.grad is not None
    torch.manual_seed(0)
    tail_relu = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU())  # ends in a ReLU
    with torch.no_grad():
        x = torch.randn(1, 6)
        assert_close_relative(FusedChain(tail_relu, {})(x), tail_relu(x))
        assert FusedChain(tail_relu, {})(torch.randn(1, 1, 6)).shape == (1, 1, 4)  # no Flatten: not 2-D, modules


def test_sparsify_fuses_linear_chains_when_faster(monkeypatch):
    import ticketlab.deploy.sparse_inference as si

    model, masks = pruned("lenet300", 0.05)
    patch_everywhere(monkeypatch, "time_calls", lambda functions, *a, **k: {n: 0.5 if n == "fused" else 1.0
                                                                             for n in functions})
    fast = sparsify(model, masks, batch_sizes=(1, 8), check_model=False)
    # the Flatten goes into the chain too, and the chain is then the whole model's forward
    assert isinstance(fast.fc1, si.FusedChain) and list(fast.sparse_fused) == ["fc1"]
    assert [n for n, _ in fast.named_children()] == ["fc1"] and fast.forward == fast.fc1.forward
    with torch.no_grad():
        for batch in (1, 8):
            x = torch.randn(batch, 1, 28, 28)
            assert_close_relative(fast(x), model(x))
        # the call skips nn.Module's machinery only while nothing hooks it
        seen = []
        handle = fast.register_forward_hook(lambda module, args, output: seen.append(output.shape))
        assert_close_relative(fast(x[:1]), model(x[:1]))
        handle.remove()
        global_handle = nn.modules.module.register_module_forward_hook(lambda m, a, o: seen.append(type(m)))
        try:
            fast(x[:1])
        finally:
            global_handle.remove()
        assert seen[0] == (1, 10) and type(fast) in seen[1:]



def test_relu_and_pool_after_a_direct_convolution_run_inside_its_call(monkeypatch, tmp_path):
    """Conv2d -> ReLU [-> 2x2 MaxPool2d] runs of a Sequential become ConvBlocks where the convolution runs `direct`:
    equal to the modules (odd sizes: the pool floors), a pool the kernel cannot apply stays a module, grad mode runs
    the modules, and the dense view exports to ONNX equal to the model."""
    ort = pytest.importorskip("onnxruntime")
    from ticketlab.deploy.onnx_export import export_onnx
    from ticketlab.deploy.sparse_inference import ConvBlock

    needs_direct("direct")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                          nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Conv2d(16, 8, 3), nn.ReLU(), nn.MaxPool2d(3),
                          nn.Flatten(), nn.Linear(8, 10)).eval()
    masks = Masks({f"{i}.weight": torch.rand(model[i].weight.shape) < 0.2 for i in (0, 2, 5)})
    masks.apply(model)
    patch_everywhere(monkeypatch, "time_kernels", lambda layer, x, kernels, *a, **k: {
        k: 0.1 if k == "direct" else 1.0 for k in kernels})  # direct wins wherever it is a candidate
    fast = sparsify(model, masks, batch_sizes=(1, 4), example_input=torch.randn(4, 3, 13, 13), check_model=False)
    blocks = {name: m.pool for name, m in fast.named_children() if isinstance(m, ConvBlock)}
    assert blocks == {"0": False, "2": True, "5": False}
    assert [type(m) for m in fast.children()][3:5] == [nn.MaxPool2d, nn.Flatten]  # the 3x3 pool stays a module
    with torch.no_grad():
        for batch in (1, 3, 4):
            x = torch.randn(batch, 3, 13, 13)
            assert_close_relative(fast(x), model(x))
    x = torch.randn(2, 3, 13, 13, requires_grad=True)
    fast(x).sum().backward()  # grad mode: the modules, so the gradient flows
    assert x.grad is not None and x.grad.abs().sum() > 0
    export_onnx(fast, torch.randn(1, 3, 13, 13), tmp_path / "blocks.onnx")  # its dense equivalent
    session = ort.InferenceSession(str(tmp_path / "blocks.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 13, 13)
    with torch.no_grad():
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert_close_relative(torch.from_numpy(got), model(x))
