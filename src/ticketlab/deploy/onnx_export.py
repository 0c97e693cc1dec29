"""Checked exports: ONNX (run in onnxruntime) and torch.export programs, of masked, compacted or `sparsify`d models.

Each export traces the model's dense equivalent (ticketlab.deploy.dense_view: a `sparsify`d model's numba and CSR
kernels cannot be traced; the dense layers they hold compute the same outputs), writes a temporary file beside the
target, loads it back and runs it (ONNX in onnxruntime, the program through `ExportedProgram.module()`) on the
example input and on a second input (another batch size and other values), comparing with PyTorch's outputs within
1e-5 (scaled by the outputs' magnitude above 1). Only then is the file moved into place (atomically); otherwise
it is deleted and the export refused with one line. An existing file is replaced only with `overwrite=True`.

ONNX uses the TorchScript exporter (`dynamo=False`: the dynamo exporter needs onnxscript, not a dependency), with
the batch dimension dynamic. An unstructured-sparse model exports as a dense graph whose pruned weights are zeros
(ONNX has no sparse kernels that onnxruntime runs faster); compact it first (`compact`) for a smaller graph.
"""

import io
import logging
import warnings
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ticketlab.deploy.artifact import (
    check_target,
    eager,
    first_line,
    flat_tensors,
    max_difference,
    second_input,
    staged,
)
from ticketlab.deploy.dense_view import dense_equivalent
from ticketlab.errors import TicketlabError

INSTALL = "pip install 'ticketlab[deploy]'"


@dataclass
class Exported:
    """What a checked export wrote: the file, its size, and the largest output difference found by the check."""

    path: Path
    bytes: int
    max_difference: float
    checked_batches: tuple[int, ...]

    def format(self) -> str:
        batches = " and ".join(map(str, self.checked_batches))
        return (f"wrote {self.path}: {self.bytes:,} bytes; checked against PyTorch at batch {batches}: "
                f"max difference {self.max_difference:.2g}")


def export_onnx(model: nn.Module, example_input: torch.Tensor, path, overwrite: bool = False,
                opset: int | None = None) -> Exported:
    """Write `model` (eval mode) as an ONNX file, checked in onnxruntime; see the module docstring."""
    onnx, ort = _require_onnx()
    path = check_target(path, overwrite)
    net = dense_equivalent(model)
    other = second_input(model, example_input)
    with _eval(net):
        expected = [eager(net, example_input), eager(net, other)]
        with staged(path, overwrite) as tmp:
            names = [f"output_{i}" for i in range(len(expected[0]))] if len(expected[0]) > 1 else ["output"]
            try:
                with _quiet(), torch.no_grad():
                    torch.onnx.export(net, (example_input,), str(tmp), dynamo=False, input_names=["input"],
                                      output_names=names, opset_version=opset,
                                      dynamic_axes={n: {0: "batch"} for n in ["input", *names]})
                onnx.checker.check_model(str(tmp))
                session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            except Exception as e:  # the exporter and onnxruntime raise many types; the cause goes in the line
                raise TicketlabError(f"cannot export {type(model).__name__} to ONNX: {first_line(e)}") from None
            inputs = [i.name for i in session.get_inputs()]
            if inputs != ["input"]:
                raise TicketlabError(f"the ONNX graph of {type(model).__name__} does not read its input (the trace "
                                     "recorded constants: an operation outside torch); not written")
            worst = max(max_difference(want, session.run(None, {"input": x.cpu().numpy()}), "ONNX export")
                        for want, x in zip(expected, (example_input, other), strict=True))
    return Exported(path, path.stat().st_size, worst, (example_input.shape[0], other.shape[0]))


def export_program(model: nn.Module, example_input: torch.Tensor, path, overwrite: bool = False) -> Exported:
    """Write `model` (eval mode) as a torch.export program (`torch.export.save`, load with `torch.export.load`),
    checked by running it; the batch dimension is dynamic where torch.export can make it so."""
    path = check_target(path, overwrite)
    net = dense_equivalent(model)
    other = second_input(model, example_input)[: example_input.shape[0]].contiguous()
    with _eval(net):
        expected = [eager(net, example_input), eager(net, other)]
        try:
            with _quiet():
                program = torch.export.export(net, (example_input,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
        except Exception as e:  # torch.export raises many types (Unsupported, UserError, ...)
            raise TicketlabError(f"torch.export cannot export {type(model).__name__}: {first_line(e)}; ONNX export "
                                 "(export_onnx, --format onnx) may still work") from None
        with staged(path, overwrite) as tmp, _quiet():
            torch.export.save(program, tmp)
            loaded = torch.export.load(tmp).module()
            worst = 0.0
            for want, x in zip(expected, (example_input, other), strict=True):
                with torch.no_grad():
                    got = flat_tensors(loaded(x))
                worst = max(worst, max_difference(want, got, "torch.export program"))
    return Exported(path, path.stat().st_size, worst, (example_input.shape[0],))


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise TicketlabError(f"ONNX export needs onnx and onnxruntime: {INSTALL}") from None
    return onnx, onnxruntime


@contextmanager
def _eval(model: nn.Module):
    """Eval mode for the export, the caller's mode restored afterwards."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


@contextmanager
def _quiet():
    """The exporters' deprecation and tracer warnings, logs and stderr chatter: the check decides, not them."""
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)
