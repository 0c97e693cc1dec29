"""One observed forward pass: the rows a model can have (`_slots`) and the hooks that fill their `_Work`."""

import contextlib

import torch
from torch import nn

from ticketlab.core.counting.hooks import (
    WEIGHTED_TYPES,
    _declared_hook,
    _join,
    _mha_hook,
    _mha_kept,
    _weighted_layer_hook,
)
from ticketlab.core.counting.products import _ProductCounter
from ticketlab.core.counting.work import _Work
from ticketlab.core.masks import Masks
from ticketlab.errors import TicketlabError


def _mha_names(model: nn.Module) -> set[str]:
    return {n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}


def _inside(name: str, parents: set[str]) -> bool:
    """True for modules strictly inside one of `parents` (an MHA's out_proj is counted by the MHA itself)."""
    return any(name != p and (p == "" or name.startswith(f"{p}.")) for p in parents)


def _label(module_name: str) -> str:
    return module_name or "(model)"


def _slots(model: nn.Module) -> list[tuple[str, str, list[tuple[str, nn.Parameter]]]]:
    """Possible rows in module order: (row name, kind, [(parameter name, parameter)]), each parameter once.

    A module gives its own row (its direct parameters) and a `:products` row; an MHA gives in_proj, products
    and out_proj rows holding its parameters."""
    mha = _mha_names(model)
    seen: set[int] = set()

    def fresh(named) -> list[tuple[str, nn.Parameter]]:
        out = [(n, p) for n, p in named if id(p) not in seen]
        seen.update(id(p) for _, p in out)
        return out

    slots = []
    for name, module in model.named_modules():
        if _inside(name, mha):
            continue
        label = _label(name)
        if isinstance(module, nn.MultiheadAttention):
            params = fresh(module.named_parameters(prefix=name))
            out_prefix = _join(name, "out_proj.")
            out = [(n, p) for n, p in params if n.startswith(out_prefix)]
            inp = [(n, p) for n, p in params if not n.startswith(out_prefix)]
            slots += [(f"{label}.in_proj", "MHA in_proj", inp), (f"{label}:products", "products", []),
                      (f"{label}.out_proj", "MHA out_proj", out)]
        else:
            slots += [(label, type(module).__name__, fresh(module.named_parameters(name, recurse=False))),
                      (f"{label}:products", "products", [])]
    return slots


@contextlib.contextmanager
def _observed(model: nn.Module, masks: Masks, kept: dict[str, int], works: dict[str, _Work]):
    """Hooks that fill `works` (keyed by row name) during one forward pass; removed afterwards even on error."""
    stack: list[str] = []
    inside_counted = [0]
    handles = []
    mha = _mha_names(model)
    for name, module in model.named_modules():
        if _inside(name, mha):
            continue
        label = _label(name)
        counted = isinstance(module, (*WEIGHTED_TYPES, nn.MultiheadAttention)) or hasattr(module, "count_macs")
        handles.append(module.register_forward_pre_hook(_push(stack, inside_counted, label, counted)))
        handles.append(module.register_forward_hook(_pop(stack, inside_counted, counted)))
        if isinstance(module, WEIGHTED_TYPES):
            key = _join(name, "weight")
            hook = _weighted_layer_hook(works.setdefault(label, _Work()), kept.get(key, module.weight.numel()))
            handles.append(module.register_forward_hook(hook, with_kwargs=True))
        elif hasattr(module, "count_macs"):
            own = {n: kept.get(_join(name, n), p.numel()) for n, p in module.named_parameters(recurse=False)}
            handles.append(module.register_forward_hook(_declared_hook(works.setdefault(label, _Work()), own)))
        elif isinstance(module, nn.MultiheadAttention):
            for part in (".in_proj", ".out_proj", ":products"):
                works.setdefault(f"{label}{part}", _Work())
            hook = _mha_hook(label, works, _mha_kept(name, module, masks))
            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with _ProductCounter(stack, inside_counted, works):
            yield
    finally:
        for h in handles:
            h.remove()


def _push(stack, inside_counted, name, counted):
    def hook(module, args):
        stack.append(name)
        inside_counted[0] += counted

    return hook


def _pop(stack, inside_counted, counted):
    def hook(module, args, output):
        stack.pop()
        inside_counted[0] -= counted

    return hook


def _forward(model: nn.Module, example_input) -> None:
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    except RuntimeError as e:
        given = [tuple(x.shape) for x in inputs if isinstance(x, torch.Tensor)]
        given_text = given[0] if len(given) == 1 else given
        expected = getattr(model, "input_shape", None)
        expected_text = f"(batch, {', '.join(map(str, expected))})" if expected is not None else "another shape"
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise TicketlabError(f"example input of shape {given_text} does not fit the model: expected "
                             f"{expected_text} ({reason})") from None
    finally:
        model.train(was_training)
