"""What of your model, data and task the run's identity covers (config fields model.digest, data.digest, train.task):
rerunning with other weights, other data or another loss lands in another run directory, never resumes into this one.

θ0's digest covers every parameter and buffer. The data's covers each split's size and, when it can be read as
bytes, up to 64 items spread over each split (hashing gigabytes before every resume would cost more than it saves).
The task is named by qualified names: a loss changed inside the same function goes unseen."""

import hashlib
import io

import torch
from torch import nn

SAMPLED = 64


def model_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()[:12]


def data_digest(splits) -> str:
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        n = len(split)
        h.update(f"{name}:{n}".encode())
        indices = torch.linspace(0, n - 1, min(n, SAMPLED)).long().unique()
        h.update(tensor_bytes(split.batch(indices)))
    return h.hexdigest()[:12]


def tensor_bytes(batch) -> bytes:
    """The batch's tensors as bytes, in order (dict keys sorted); other values by their repr."""
    out = io.BytesIO()

    def visit(x):
        if isinstance(x, torch.Tensor):
            out.write(str((x.dtype, tuple(x.shape))).encode())
            out.write(x.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b"")
        elif isinstance(x, dict):
            for k in sorted(x):
                out.write(str(k).encode())
                visit(x[k])
        elif isinstance(x, (tuple, list)):
            for v in x:
                visit(v)
        else:
            out.write(repr(x).encode())

    visit(batch)
    return out.getvalue()


def name_of(thing) -> str:
    """A callable's module and qualified name; an object's class and its repr (an nn.Module loss with settings)."""
    if isinstance(thing, str) or thing is None:
        return str(thing)
    if isinstance(thing, nn.Module):
        return f"{type(thing).__module__}.{type(thing).__qualname__}({thing.extra_repr()})"
    return f"{getattr(thing, '__module__', '?')}.{getattr(thing, '__qualname__', repr(thing))}"


def task_name(loss, metric, step, optimizer: str | None) -> str | None:
    """None for the default task (cross-entropy, accuracy, a configured optimizer): runs keep their usual hash.
    `optimizer`: the factory's optimizer already named (api/find_tickets.py), or None."""
    named = [f"{k}={name_of(v)}" for k, v in {"loss": loss, "metric": metric, "step": step}.items() if v is not None]
    return " ".join([*named, *([f"optimizer={optimizer}"] if optimizer else [])]) or None
