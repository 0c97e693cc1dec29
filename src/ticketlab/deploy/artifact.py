"""What every checked export shares: a file that appears whole or not at all, never over a file nobody asked to
replace, and outputs compared with PyTorch's on the example and on a second input.

The second input matters: a trace that turned the computation into a constant (what a `sparsify`d model gave:
a 147-byte ONNX graph of one Constant node) reproduces the example's outputs exactly, and only differs elsewhere.
"""

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ticketlab.core.files import file_errors, umask
from ticketlab.errors import TicketlabError

TOLERANCE = 1e-5  # absolute, scaled by the outputs' largest magnitude when that is above 1


def check_target(path, overwrite: bool) -> Path:
    """The output path, refused when it is a directory or exists and `overwrite` is not set."""
    path = Path(path)
    if path.is_dir():
        raise TicketlabError(f"{path} is a directory; give the path of a file, e.g. {path / 'model.onnx'}")
    if path.exists() and not overwrite:
        raise TicketlabError(f"{path} already exists; choose another file, or replace it with overwrite=True "
                             "(--force)")
    return path


@contextmanager
def staged(path: Path, overwrite: bool):
    """A temporary file beside `path` to write and check; moved to `path` (fsynced) only when the block succeeds,
    deleted otherwise. Without `overwrite`, a file that appeared at `path` meanwhile is not replaced."""
    with file_errors(path, "write"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
        os.fchmod(fd, 0o666 & ~umask())  # what a plain open() gives; mkstemp makes 0600
        os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with file_errors(path, "write"):
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # fails if the path exists: no race with another writer
    except FileExistsError:
        raise TicketlabError(f"{path} already exists; choose another file, or replace it with overwrite=True "
                             "(--force)") from None
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise TicketlabError(f"{path} already exists") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def second_input(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    """Another batch, one larger, of the example's kind: random values for float inputs; for token ids the model's
    own `example_input` (other ids), else the example's rows in reverse order."""
    batch = example.shape[0] + 1
    if example.is_floating_point():
        g = torch.Generator().manual_seed(1)
        noise = torch.randn(batch, *example.shape[1:], generator=g, dtype=example.dtype)
        return (noise * example.std().clamp(min=1e-3) + example.mean()).to(example.device)
    make = getattr(model, "example_input", None)
    if callable(make):
        other = make(batch, seed=1)
        if other.shape[1:] == example.shape[1:] and other.dtype == example.dtype:
            return other
    return torch.cat([example.flip(0), example[:1]])


def eager(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return flat_tensors(model(x))


def flat_tensors(out) -> list[torch.Tensor]:
    """The tensors of a model's output, in order (tensor, tuple/list, dict or a Hugging Face ModelOutput)."""
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, list | tuple):
        return [t for o in out for t in flat_tensors(o)]
    return []


def max_difference(expected: list[torch.Tensor], got: list, what: str) -> float:
    """The largest difference; refused (TicketlabError) beyond the tolerance or on other shapes."""
    if len(expected) != len(got):
        raise TicketlabError(f"{what}: {len(got)} outputs, PyTorch gives {len(expected)}")
    worst = 0.0
    for e, g in zip(expected, got, strict=True):
        g = torch.as_tensor(g)
        if tuple(g.shape) != tuple(e.shape):
            raise TicketlabError(f"{what}: output of shape {tuple(g.shape)}, PyTorch gives {tuple(e.shape)}")
        if not e.numel():
            continue
        diff = float((g.to(e.dtype) - e).abs().max())
        if not diff <= TOLERANCE * max(1.0, float(e.abs().max())):
            raise TicketlabError(f"{what}: outputs differ from PyTorch's by {diff:.3g} (allowed {TOLERANCE:g}); "
                                 "not written")
        worst = max(worst, diff)
    return worst


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__
