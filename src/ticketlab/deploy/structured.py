"""Structured compaction of any traceable model (residual CNNs, BERT blocks): the units that pruning left dead are
removed, giving a physically smaller model with the masked model's outputs (eval mode).

Why Torch-Pruning and not torch.fx: the hard part is knowing which channels are coupled, e.g. every conv that
writes into or reads from one residual stream, or a head's rows of Q, K and V with its columns of the attention
output. Torch-Pruning's DependencyGraph finds these groups by tracing autograd, so it follows functional adds,
`view`/`transpose`, flatten, concat and scaled-dot-product attention in models whose `forward` is arbitrary Python
(HF BERT, with its mask handling, does not symbolically trace with torch.fx), and it slices every member of a group
(BatchNorm included) in one call. What it does not know is *which* units may go without changing the outputs:
that is decided here, per group of coupled units.

A unit (one index of a group) is removed when
  - dead out: every layer that reads it (Linear/ConvNd input columns) has all its weights on it pruned; or
  - dead in: every layer that writes it has all its weights into it pruned, so it carries a constant, and the value
    each reader sees is that constant at every position: it is folded into the reader's bias (a Linear; a conv
    only without zero padding), or it is 0.
Groups touching a LayerNorm, an embedding or any other module that mixes or owns channels (BERT's hidden size) are
left whole, as are the network's inputs (x + f(x)) and outputs. Attention heads (HF layers with
`attention_head_size`) go whole: a head when all its units can. Removals repeat until nothing changes; a layer left
with no unit is refused (layer collapse). The result is checked against the masked model on the example input; any
difference beyond 1e-5 is refused, never returned.
"""

import copy

import torch
from torch import nn

from ticketlab.core.masks import Masks
from ticketlab.deploy.artifact import flat_tensors
from ticketlab.errors import TicketlabError

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
CHANNELWISE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
INSTALL = "pip install 'ticketlab[deploy]'"
TOLERANCE = 1e-5


def require_torch_pruning():
    try:
        import torch_pruning
    except ImportError:
        raise TicketlabError(f"compacting a model that is not a plain nn.Sequential needs torch-pruning: {INSTALL}"
                             ) from None
    return torch_pruning


def compact_graph(model: nn.Module, masks: Masks, example_input) -> tuple[nn.Module, Masks]:
    """(smaller model, its masks): see the module docstring. `masks` were checked against `model`."""
    tp = require_torch_pruning()
    work = copy.deepcopy(model).eval()
    masks.apply(work)
    names = {m: n for n, m in work.named_modules()}
    graph = tp.DependencyGraph().build_dependency(work, example_inputs=example_input, verbose=False)  # autograd
    with torch.no_grad():
        expected = work(example_input)
        groups = [g for g in graph.get_all_groups(root_module_types=LAYERS) if _prunable(g)]
        removed = [torch.zeros(len(g[0].idxs), dtype=torch.bool) for g in groups]
        parents = {child: parent for parent in work.modules() for child in parent.children()}
        while _sweep(work, groups, removed, (names, parents), example_input):
            pass
        kept = _prune(graph, groups, removed, names, parents)
        try:
            got = work(example_input)
        except Exception as e:  # a coupling the graph missed gives mismatched shapes: refuse, never return it
            raise TicketlabError(f"compact broke the model's forward ({type(e).__name__}); the model has an "
                                 "operation compaction does not model (please report)") from None
        _check_same(expected, got)
    work.train(model.training)
    return work, _slice_masks(masks, kept)


# -- which groups, which units ----------------------------------------------------------------------------------
def _prunable(group) -> bool:
    """Only Linear/ConvNd (groups=1), BatchNorm and Torch-Pruning's own op nodes; no network input or output."""
    for item in group:
        module = item.dep.target.module
        if not item.dep.target.outputs and _is_out(item):
            return False  # the network's output
        if _adds_untraced(item.dep.target):
            return False  # the network's input (or a constant) added into the group: x + f(x) keeps all of x
        if type(module).__module__.startswith("torch_pruning"):
            continue
        if isinstance(module, CHANNELWISE) or (isinstance(module, LAYERS) and getattr(module, "groups", 1) == 1):
            continue
        return False
    return any(_is_out(i) and isinstance(i.dep.target.module, LAYERS) for i in group)


def _adds_untraced(node) -> bool:
    """An add/sub whose other operand autograd does not trace (no grad: the input, a buffer)."""
    grad_fn = getattr(node, "grad_fn", None)
    return (type(grad_fn).__name__ in ("AddBackward0", "SubBackward0")
            and any(f is None for f, _ in grad_fn.next_functions))


def _is_out(item) -> bool:
    return item.dep.handler.__name__ == "prune_out_channels"


def _members(group) -> tuple[list, list]:
    """(writers, readers): (module, {root index: [own indices]}) of the group's Linear/ConvNd layers."""
    writers, readers = [], []
    for item in group:
        module = item.dep.target.module
        if not isinstance(module, LAYERS):
            continue
        index: dict[int, list[int]] = {}
        for own, root in zip(item.idxs, item.root_idxs, strict=True):
            index.setdefault(int(root), []).append(int(own))
        (writers if _is_out(item) else readers).append((module, index))
    return writers, readers


def _sweep(work: nn.Module, groups, removed: list, modules: tuple[dict, dict], example) -> bool:
    """One pass over the groups: mark removable units, fold their constants, zero them; True if any was new."""
    names, parents = modules
    inputs = _reader_inputs(work, groups, example)
    changed = False
    for group, gone in zip(groups, removed, strict=True):
        writers, readers = _members(group)
        new = torch.tensor([not gone[r] and _removable(r, writers, readers, inputs) for r in range(len(gone))])
        new = _whole_heads(new | gone, [parents.get(m) for m, _ in writers]) & ~gone
        if not new.any():
            continue
        if (gone | new).all():
            layer = names[writers[0][0]]
            raise TicketlabError(f"compact: every unit of layer {layer!r} is dead (no kept weight in or out): layer "
                                 f"collapse; prune {layer!r} less (keep a minimum density per layer)")
        for r in new.nonzero().flatten().tolist():
            _fold_and_zero(r, writers, readers, inputs)
        gone |= new
        changed = True
    return changed


def _reader_inputs(work: nn.Module, groups, example) -> dict:
    """The input each reading layer sees on `example` (one forward pass with hooks)."""
    readers = {m for g in groups for m, _ in _members(g)[1]}
    seen, hooks = {}, []
    for module in readers:
        hooks.append(module.register_forward_hook(lambda m, args, out: seen.__setitem__(m, args[0].detach())))
    try:
        work(example)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _removable(r: int, writers, readers, inputs) -> bool:
    if not readers:
        return False
    if all(not module.weight[:, own].any() for module, index in readers for own in [index.get(r, [])]):
        return True  # dead out
    if any(module.weight[index.get(r, [])].any() for module, index in writers):
        return False  # not dead in either
    return all(not module.weight[:, index.get(r, [])].any()
               or _constant(module, inputs.get(module), index.get(r, [])) is not None for module, index in readers)


def _constant(module: nn.Module, x, own: list[int]):
    """The values this reader sees on input units `own`, if each is one constant it can fold; else None."""
    if x is None or not own:
        return None if x is None else torch.zeros(0)
    if isinstance(module, nn.Linear):
        cols = x.reshape(-1, x.shape[-1])[:, own]  # one value per column, the same in every row
    else:
        cols = x.transpose(0, 1)[own].reshape(len(own), -1).t()  # one value per channel, at every position
    values = cols.mean(dim=0)
    if (cols - values).abs().max() > TOLERANCE * max(1.0, float(values.abs().max())):
        return None
    if not values.abs().max() > 0:
        return values
    if module.bias is None or (isinstance(module, LAYERS[1:]) and _zero_padded(module)):
        return None
    return values


def _zero_padded(conv: nn.Module) -> bool:
    padding = conv.padding
    padded = padding == "same" or (any(padding) if isinstance(padding, tuple | list) else bool(padding))
    return padded and conv.padding_mode == "zeros"


def _fold_and_zero(r: int, writers, readers, inputs) -> None:
    """Add what unit r sends (a constant, or nothing) to its readers' biases; then cut it off in the weights."""
    for module, index in readers:
        own = index.get(r, [])
        if not own:
            continue
        if module.weight[:, own].any():
            values = _constant(module, inputs[module], own)
            if values.any():  # (a zero constant adds nothing, also to a layer without bias)
                module.bias += module.weight[:, own].reshape(module.weight.shape[0], len(own), -1).sum(2) @ values
        module.weight[:, own] = 0
    for module, index in writers:
        module.weight[index.get(r, [])] = 0


def _whole_heads(removable: torch.Tensor, parents: list) -> torch.Tensor:
    """Attention units go by whole heads (the writers' parent knows the head size): a head only when all its units
    can."""
    sizes = {getattr(p, "attention_head_size", None) for p in parents} - {None}
    if not sizes:
        return removable
    size = sizes.pop()
    return removable.reshape(-1, size).all(dim=1).repeat_interleave(size)


# -- pruning ----------------------------------------------------------------------------------------------------
def _prune(graph, groups, removed: list, names: dict, parents: dict) -> dict:
    """Slice every group with removed units; returns {(module name, dim): kept indices} for the masks."""
    kept = {}
    for group, gone in zip(groups, removed, strict=True):
        if not gone.any():
            continue
        root = group[0].dep
        idxs = gone.nonzero().flatten().tolist()
        pruning = graph.get_pruning_group(root.target.module, root.handler, idxs=idxs)
        for item in pruning:
            module = item.dep.target.module
            if module in names:
                dim = 0 if _is_out(item) else 1
                size = _size(module, dim)
                drop = set(int(i) for i in item.idxs)
                kept[(names[module], dim)] = torch.tensor([i for i in range(size) if i not in drop], dtype=torch.long)
        _shrink_heads(pruning, parents, len(idxs))
        pruning.prune()
    return kept


def _size(module: nn.Module, dim: int) -> int:
    if isinstance(module, CHANNELWISE):
        return module.num_features
    return module.weight.shape[dim]


def _shrink_heads(pruning, parents: dict, count: int) -> None:
    """HF attention layers keep their head count in attributes: lower them with the heads removed."""
    done = set()
    for item in pruning:
        parent = parents.get(item.dep.target.module)
        if parent is None or id(parent) in done or not hasattr(parent, "attention_head_size"):
            continue
        done.add(id(parent))
        heads = count // parent.attention_head_size
        if hasattr(parent, "num_attention_heads"):
            parent.num_attention_heads -= heads
        if hasattr(parent, "all_head_size"):
            parent.all_head_size -= heads * parent.attention_head_size


def _slice_masks(masks: Masks, kept: dict) -> Masks:
    out = {}
    for name, mask in masks.items():
        module, _, param = name.rpartition(".")
        for dim in (0, 1):
            keep = kept.get((module, dim))
            if keep is not None and mask.dim() > dim and (param == "weight" or dim == 0):
                mask = mask.index_select(dim, keep.to(mask.device))
        out[name] = mask
    return Masks(out)


def _check_same(expected, got) -> None:
    a, b = flat_tensors(expected), flat_tensors(got)
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        raise TicketlabError("compact changed the model's output shapes; the model is not supported (please report)")
    for x, y in zip(a, b, strict=True):
        scale = max(1.0, float(x.abs().max())) if x.numel() else 1.0
        if x.numel() and float((x - y).abs().max()) > TOLERANCE * scale:
            raise TicketlabError(f"compact could not keep the outputs (differ by {float((x - y).abs().max()):.2e}); "
                                 "the model has an operation compaction does not model (please report)")
