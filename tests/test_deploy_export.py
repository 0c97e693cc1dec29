"""Checked exports: ONNX files run in onnxruntime and torch.export programs run again equal PyTorch's outputs, for
masked, compacted and sparsify()d models; what cannot be exported is refused and leaves no file; the CLI route."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.deploy.compact import compact
from ticketlab.deploy.onnx_export import export_onnx, export_program
from ticketlab.deploy.sparse_inference import FusedChain, SparseLayer, sparsify
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.presets import build_config
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model

from .conftest import main_in_process

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
TICKETLAB = Path(sys.executable).with_name("ticketlab")


def masked(name: str, rate: float = 0.9, **options) -> tuple[nn.Module, Masks]:
    model = build_model(name, seed=0, **options).eval()
    masks = prune(model, Masks.ones(model), PruneSpec(rate=rate, seed=1))
    masks.apply(model)
    return model, masks


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 1e-5 * max(1.0, float(expected.abs().max()))


def images(n: int, shape=(1, 28, 28), seed: int = 5) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def only_file(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_unstructured_sparse_model_runs_in_onnxruntime(tmp_path):
    model, _ = masked("lenet300")
    report = export_onnx(model, images(1), tmp_path / "ticket.onnx")
    assert report.path.stat().st_size == report.bytes > 100_000 and report.max_difference <= 1e-5
    with torch.no_grad():
        assert_close(run_onnx(tmp_path / "ticket.onnx", images(9, seed=11)), model(images(9, seed=11)))
    assert only_file(tmp_path) == ["ticket.onnx"]  # no temporary file left beside it


def test_compacted_residual_cnn_runs_in_onnxruntime_and_is_smaller(tmp_path):
    model = build_model("resnet20", seed=0).eval()
    masks = prune(model, Masks.ones(model), PruneSpec(criterion="neuron", rate=0.5, seed=2))
    masks.apply(model)
    small = compact(model, masks)
    export_onnx(model, images(2, (3, 32, 32)), tmp_path / "masked.onnx")
    export_onnx(small, images(2, (3, 32, 32)), tmp_path / "small.onnx")
    assert (tmp_path / "small.onnx").stat().st_size < 0.8 * (tmp_path / "masked.onnx").stat().st_size
    x = images(3, (3, 32, 32), seed=8)
    with torch.no_grad():
        assert_close(run_onnx(tmp_path / "small.onnx", x), model(x))


def test_compacted_tiny_bert_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("transformers")
    model, masks = masked("tiny-bert", rate=0.5, num_classes=3, vocab_size=64)
    masks = dict(masks)
    masks["hf.bert.encoder.layer.0.attention.output.dense.weight"][:, :32] = False  # heads 0 and 1 read by nothing
    masks = Masks(masks)
    masks.apply(model)
    small = compact(model, masks)
    assert small.hf.bert.encoder.layer[0].attention.self.num_attention_heads == 2
    export_onnx(small, model.example_input(2), tmp_path / "bert.onnx")
    x = model.example_input(4, seed=3)
    with torch.no_grad():
        assert_close(run_onnx(tmp_path / "bert.onnx", x), model(x))


def test_sparsified_model_exports_its_dense_equivalent_and_stays_sparse(tmp_path):
    model, masks = masked("lenet300", rate=0.95)
    fast = sparsify(model, masks, min_time=0.005)
    assert any(isinstance(m, SparseLayer | FusedChain) for m in fast.modules())
    with torch.no_grad():
        before = fast(images(1))
    export_onnx(fast, images(1), tmp_path / "fast.onnx")
    assert (tmp_path / "fast.onnx").stat().st_size > 100_000  # not the 147-byte graph of one Constant
    with torch.no_grad():
        for n in (1, 7):
            assert_close(run_onnx(tmp_path / "fast.onnx", images(n, seed=n)), model(images(n, seed=n)))
        assert torch.equal(fast(images(1)), before)  # the sparsified model itself is untouched
    program = export_program(fast, images(1), tmp_path / "fast.pt2")
    loaded = torch.export.load(program.path).module()
    with torch.no_grad():
        assert_close(loaded(images(1, seed=4)), model(images(1, seed=4)))


class ThroughNumpy(nn.Module):
    """A forward that leaves torch: a trace records its output as a constant."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.from_numpy(np.tanh(self.fc(x).detach().numpy()))


def test_what_cannot_be_exported_is_refused_and_leaves_no_file(tmp_path):
    model = ThroughNumpy().eval()
    x = torch.randn(2, 4)
    with pytest.raises(TicketlabError, match="ONNX graph of ThroughNumpy does not read its input|differ"):
        export_onnx(model, x, tmp_path / "broken.onnx")
    with pytest.raises(TicketlabError, match="torch.export cannot export ThroughNumpy"):
        export_program(model, x, tmp_path / "broken.pt2")
    pytest.importorskip("transformers")
    bert, _ = masked("tiny-bert", rate=0.5, num_classes=3, vocab_size=64)
    with pytest.raises(TicketlabError, match="torch.export cannot export SequenceClassifier"):
        export_program(bert, bert.example_input(2), tmp_path / "bert.pt2")
    assert only_file(tmp_path) == []


def test_torch_export_program_runs_with_equal_outputs(tmp_path):
    model, _ = masked("conv2")
    report = export_program(model, images(2, (3, 32, 32)), tmp_path / "conv2.pt2")
    loaded = torch.export.load(report.path).module()
    x = images(2, (3, 32, 32), seed=6)
    with torch.no_grad():
        assert_close(loaded(x), model(x))


def test_an_existing_file_is_replaced_only_when_asked(tmp_path):
    model, _ = masked("lenet300")
    target = tmp_path / "ticket.onnx"
    target.write_bytes(b"mine")
    with pytest.raises(TicketlabError, match="already exists.*overwrite=True"):
        export_onnx(model, images(1), target)
    with pytest.raises(TicketlabError, match="already exists"):
        export_program(model, images(1), target)
    assert target.read_bytes() == b"mine"
    export_onnx(model, images(1), target, overwrite=True)
    assert target.stat().st_size > 100_000 and only_file(tmp_path) == ["ticket.onnx"]


# -- the CLI --------------------------------------------------------------------------------------------------
def cli(*args, cwd=None):
    return subprocess.run([str(TICKETLAB), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def one_line_error(result, *needles) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg = build_config("mlp-digits", overrides=[
        "train.steps=20it", "train.eval_every=20it", "train.checkpoint_every=20it", "prune.criterion=neuron",
        "prune.rate=0.5", "lottery.levels=1", "lottery.baselines=[]"])
    return Lottery.open(cfg, tmp_path_factory.mktemp("runs")).run().root


def test_cli_exports_a_run_level_to_onnx_and_compacted(run_dir, tmp_path):
    argvs = [["export", run_dir, "--format", "onnx", "--compact", "--out", tmp_path / "small.onnx"],
             ["export", run_dir, "--level", "1", "--format", "onnx"]]  # the default name, in the working directory
    procs = [subprocess.Popen([str(TICKETLAB), *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path) for argv in argvs]  # independent: started together
    (compacted, compacted_err), (_, full_err) = [p.communicate(timeout=300) for p in procs]
    assert procs[0].returncode == 0, compacted_err
    assert "wrote" in compacted and "checked against PyTorch" in compacted
    assert procs[1].returncode == 0, full_err
    full = tmp_path / f"{Path(run_dir).name}-level_01.onnx"
    assert (tmp_path / "small.onnx").stat().st_size < full.stat().st_size
    shape = ort.InferenceSession(str(full), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[1:]
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(0))
    assert_close(run_onnx(tmp_path / "small.onnx", x), run_onnx(full, x))


def test_cli_bad_input_is_one_line(run_dir, tmp_path, capsys):
    existing = tmp_path / "x.onnx"
    existing.write_bytes(b"mine")
    one_line_error(cli("export", run_dir, "--format", "onnx", "--out", existing), "already exists", "--force")
    assert existing.read_bytes() == b"mine"
    # The command's other messages through its main() in this process (its real command line: above).
    checkpoint = tmp_path / "x.safetensors"
    checkpoint.write_bytes(b"mine too")
    one_line_error(main_in_process(capsys, "export", run_dir, "--out", checkpoint), "already exists", "--force")
    assert checkpoint.read_bytes() == b"mine too"  # every format
    checkpoint.unlink()
    one_line_error(main_in_process(capsys, "export", run_dir, "--compact", "--out", tmp_path / "y.safetensors"),
                   "--compact", "onnx")
    one_line_error(main_in_process(capsys, "export", run_dir, "--format", "onnx", "--out", tmp_path), "is a directory")
    assert only_file(tmp_path) == ["x.onnx"]
