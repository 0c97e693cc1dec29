"""Honest parameter and MAC counts per layer: dense, weight-sparse, and weight x input-activation sparse.

One real forward pass with an example batch is observed through forward hooks; every number is per sample
(the batch's work divided by the size of the first dimension of the example input).

- ConvNd (any groups, stride, padding, dilation): dense MACs = output positions x weight.numel(), where output
  positions = output elements / output channels; weight-sparse MACs = output positions x kept weights. Zeros from
  padding count as work, as in dense frameworks (a kernel tap over the padding border still multiplies).
- ConvTransposeNd: the same with input positions (every input element meets every kept weight of its group).
- Linear on any leading dimensions: prod(leading dims) x weight.numel() (dense) or x kept weights.
- nn.MultiheadAttention: q/k/v input projections and the output projection like Linear layers, plus the QK^T
  and AV products (no weights, never pruned: the same in all three columns).
- Attention written with Linear layers: the Linear layers as above, and the activation x activation products
  (matmul, @, bmm, baddbmm, 2-operand einsum, scaled_dot_product_attention) called outside Linear/ConvNd/MHA are
  counted in a `<module>:products` row of the module that calls them, dense in all three columns.
- Weight x activation sparsity uses Han et al.'s product approximation: weight-sparse MACs x density of the
  layer's input activations (fraction of non-zero entries of the real batch, or `activation_density`). The exact
  count (kept weights meeting a non-zero input) needs the positions of both and is not what the paper reports.
- Modules that know their own work define `count_macs(args, output, kept) -> (dense, kept MACs)` of one call
  (`kept`: entries kept of each of the module's own parameters). Graph aggregation (`ticketlab.models.graph.Adjacency`)
  counts nnz(Â) x feature width per call, nnz = 2 x edges + one self-loop per node, over all edges (dense) or
  the kept edges (weight-sparse); the GCN's feature transforms are Linear layers over all N nodes.
- A model with `count_per_forward = True` (a full-graph GNN: every forward computes all nodes, whatever rows it
  returns) is counted per forward pass, not per example.
- Not counted: bias additions, norms, pooling, activations, residual additions, softmax, embedding lookups.
- Parameters: every parameter once (biases included); `kept` = parameters minus the entries a mask prunes. The mask
  defines what is pruned, never a weight's value (a zero or negative weight is still kept when its mask says so).
"""

import torch
from torch import nn

from ticketlab.core.counting.counts import Counts, LayerCount
from ticketlab.core.counting.observe import _forward, _label, _observed, _slots
from ticketlab.core.counting.work import _Work
from ticketlab.core.masks import Masks, prunable_names
from ticketlab.errors import TicketlabError, closest

DEFAULT_BATCH = 2
# Layers with parameters whose work is deliberately not counted as MACs (normalisation, lookups, activations).
NO_MAC_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm,
                nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm, nn.Embedding, nn.EmbeddingBag, nn.PReLU)


def example_input_for(model: nn.Module, batch: int = DEFAULT_BATCH, seed: int = 0) -> torch.Tensor:
    """A random-normal batch of `model.input_shape` (seeded), on the model's device; a model whose input is not
    a float tensor (e.g. node ids) provides `example_input(batch, seed)`."""
    if hasattr(model, "example_input"):
        return model.example_input(batch, seed)
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise TicketlabError("the model has no `input_shape`; pass example_input=... to count it")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    if device.type == "meta":
        return torch.empty(batch, *shape, device=device, dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=generator, dtype=dtype).to(device)


def count(model: nn.Module, masks: Masks | None = None, example_input=None,
          activation_density: dict[str, float] | None = None) -> Counts:
    """Parameters and per-sample MACs of every layer of `model` (see the module docstring for the rules).

    masks: kept weights (`"<module>.weight"` -> bool); without masks every weight is kept.
    example_input: a tensor or tuple of tensors; default a seeded random-normal batch of `model.input_shape`.
    activation_density: {row name: fraction of non-zero inputs} replacing the measured densities of those rows.
    """
    masks = Masks({}) if masks is None else masks
    masks.check(model)
    if example_input is None:
        example_input = example_input_for(model)
    first = example_input[0] if isinstance(example_input, (tuple, list)) else example_input
    per_forward = bool(getattr(model, "count_per_forward", False))
    batch = first.shape[0] if first.dim() and not per_forward else 1
    works: dict[str, _Work] = {}
    kept = {name: int(torch.count_nonzero(mask)) for name, mask in masks.items()}
    with _observed(model, masks, kept, works):
        _forward(model, example_input)
    given = _check_densities(activation_density or {}, [n for n in works if not n.endswith(":products")])
    rows, notes = _rows(model, masks, kept, works, given, batch)
    if per_forward:
        notes.append("MACs are per forward pass over the whole graph (all nodes), not per example")
    return Counts(rows, int(batch), tuple(first.shape), notes)


def _check_densities(given: dict[str, float | None], allowed: list[str]) -> dict[str, float]:
    """Validated densities; None values mean 'measure this one'."""
    given = {name: d for name, d in given.items() if d is not None}
    for name, d in given.items():
        if name not in allowed:
            raise TicketlabError(f"activation density for {name!r}{closest(name, allowed)}: the model has no such "
                                 f"layer; layers: {', '.join(allowed)}")
        if not (isinstance(d, (int, float)) and 0.0 <= d <= 1.0):
            raise TicketlabError(f"activation density for {name!r} must be a fraction in [0, 1], got {d!r}")
    return dict(given)


def _rows(model, masks: Masks, kept: dict[str, int], works: dict[str, _Work], given: dict[str, float], batch: int):
    prunable = set(masks) if len(masks) else set(prunable_names(model))
    modules = {_label(n): m for n, m in model.named_modules()}
    rows, assumed, idle, uncounted = [], [], [], set()
    for label, kind, params in _slots(model):
        work = works.get(label)
        if work is None and not params:
            continue
        n_params = sum(p.numel() for _, p in params)
        n_prunable = sum(p.numel() for n, p in params if n in prunable)
        n_kept = sum(kept.get(n, p.numel()) for n, p in params if n in prunable)
        if work is None:  # parameters only: a no-MAC type, a container's own tensors, or a layer we cannot see
            module = modules.get(label)
            leaf = module is not None and next(module.children(), None) is None
            known = isinstance(module, NO_MAC_TYPES) or not leaf or f"{label}:products" in works
            if not known:
                uncounted.add(kind)
            rows.append(LayerCount(label, kind, n_params, n_prunable, n_kept, 0, 0, 0.0, None, "", known))
            continue
        if work.calls == 0:
            idle.append(label)
        density, act, source = _act_column(label, work, given)
        if source == "assumed dense" and work.calls:
            assumed.append(label)
        rows.append(LayerCount(label, kind, n_params, n_prunable, n_kept, round(work.dense / batch),
                               round(work.weight_sparse / batch), act / batch, density, source))
    return rows, _notes(assumed, idle, uncounted)


def _act_column(name: str, work: _Work, given: dict[str, float]):
    """(input density, weight x activation MACs over the batch, source) of a row."""
    if name.endswith(":products"):
        return None, float(work.dense), ""
    if name in given:
        return float(given[name]), work.weight_sparse * float(given[name]), "given"
    if work.measurable and work.input_numel:
        return work.input_nonzero / work.input_numel, work.act_sparse, "measured"
    return 1.0, float(work.weight_sparse), "assumed dense"


def _notes(assumed: list[str], idle: list[str], unknown_kinds: set[str]) -> list[str]:
    notes = []
    if assumed:
        notes.append(f"input density not measurable, assumed dense (1.0) for: {', '.join(assumed)}")
    if idle:
        notes.append(f"not run by the forward pass (0 MACs): {', '.join(idle)}")
    if unknown_kinds:
        notes.append(f"MACs of these layer types are not counted: {', '.join(sorted(unknown_kinds))}")
    return notes
