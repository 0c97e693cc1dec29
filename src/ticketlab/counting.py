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
  (`kept`: entries kept of each of the module's own parameters). Graph aggregation (`ticketlab.graph.Adjacency`)
  counts nnz(Â) x feature width per call, nnz = 2 x edges + one self-loop per node, over all edges (dense) or
  the kept edges (weight-sparse); the GCN's feature transforms are Linear layers over all N nodes.
- A model with `count_per_forward = True` (a full-graph GNN: every forward computes all nodes, whatever rows it
  returns) is counted per forward pass, not per example.
- Not counted: bias additions, norms, pooling, activations, residual additions, softmax, embedding lookups.
- Parameters: every parameter once (biases included); `kept` = parameters minus the entries a mask prunes. The mask
  defines what is pruned, never a weight's value (a zero or negative weight is still kept when its mask says so).
"""

import contextlib
import csv
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import TicketlabError, closest
from .masks import Masks, describe_density, prunable_names
from .pruning import PruneSpec, prune, round_half_up

DEFAULT_BATCH = 2
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
WEIGHTED_TYPES = (nn.Linear, *CONV_TYPES, *TRANSPOSED_TYPES)
# Layers with parameters whose work is deliberately not counted as MACs (normalisation, lookups, activations).
NO_MAC_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm,
                nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm, nn.Embedding, nn.EmbeddingBag, nn.PReLU)


@dataclass(frozen=True)
class LayerCount:
    """One row: a layer's parameters and its MACs per sample in the three columns."""

    name: str
    kind: str
    params: int
    prunable: int  # entries of the masked (or, without masks, default prunable) parameters
    prunable_kept: int
    macs_dense: int
    macs_weight_sparse: int
    macs_weight_act_sparse: float
    input_density: float | None  # fraction of non-zero input activations used in the third column
    density_source: str  # measured | given | assumed dense | "" (no weighted MACs)
    macs_counted: bool = True  # False for parameterised layer types whose MACs ticketlab does not know

    @property
    def kept(self) -> int:
        return self.params - (self.prunable - self.prunable_kept)

    @property
    def weight_density(self) -> float:
        return self.prunable_kept / self.prunable if self.prunable else 1.0


def ratio(before: float, after: float) -> float:
    return before / after if after else math.inf


def _finite(x):
    """JSON has no infinity: an infinite reduction (everything pruned) becomes null."""
    return None if isinstance(x, float) and math.isinf(x) else x


TOTALS = ("params", "prunable", "prunable_kept", "kept", "weight_density", "macs_dense", "macs_weight_sparse",
          "macs_weight_act_sparse", "param_reduction", "mac_reduction_weight", "mac_reduction_weight_act")


@dataclass
class Counts:
    layers: list[LayerCount]
    batch_size: int
    example_shape: tuple[int, ...]
    notes: list[str] = field(default_factory=list)

    def _sum(self, attr: str):
        return sum(getattr(row, attr) for row in self.layers)

    @property
    def params(self) -> int:
        return self._sum("params")

    @property
    def prunable(self) -> int:
        return self._sum("prunable")

    @property
    def prunable_kept(self) -> int:
        return self._sum("prunable_kept")

    @property
    def kept(self) -> int:
        return self._sum("kept")

    @property
    def weight_density(self) -> float:
        return self.prunable_kept / self.prunable if self.prunable else 1.0

    @property
    def macs_dense(self) -> int:
        return self._sum("macs_dense")

    @property
    def macs_weight_sparse(self) -> int:
        return self._sum("macs_weight_sparse")

    @property
    def macs_weight_act_sparse(self) -> float:
        return self._sum("macs_weight_act_sparse")

    @property
    def param_reduction(self) -> float:
        return ratio(self.params, self.kept)

    @property
    def mac_reduction_weight(self) -> float:
        return ratio(self.macs_dense, self.macs_weight_sparse)

    @property
    def mac_reduction_weight_act(self) -> float:
        return ratio(self.macs_dense, self.macs_weight_act_sparse)

    def layer(self, name: str) -> LayerCount:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict:
        rows = [{**asdict(r), "kept": r.kept, "weight_density": r.weight_density} for r in self.layers]
        totals = {k: _finite(getattr(self, k)) for k in TOTALS}
        return {"batch_size": self.batch_size, "example_shape": list(self.example_shape), "layers": rows,
                "total": totals, "notes": list(self.notes)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# -- observation of one forward pass -----------------------------------------------------------------------------
@dataclass
class _Work:
    """Work of one row summed over all calls in the batch (divided by the batch size at the end)."""

    dense: int = 0
    weight_sparse: int = 0
    act_sparse: float = 0.0  # sum over calls of weight-sparse MACs x measured input density
    input_numel: int = 0
    input_nonzero: int = 0
    measurable: bool = True  # False on the meta device, where values do not exist
    calls: int = 0

    def add(self, dense: int, weight_sparse: int, x: torch.Tensor | None) -> None:
        self.dense += dense
        self.weight_sparse += weight_sparse
        self.calls += 1
        if x is None or x.is_meta:  # no values to look at
            self.measurable = False
            return
        nonzero = int(torch.count_nonzero(x))
        self.input_numel += x.numel()
        self.input_nonzero += nonzero
        self.act_sparse += weight_sparse * nonzero / max(x.numel(), 1)


def _weighted_layer_hook(work: _Work, kept: int):
    def hook(module: nn.Module, args, kwargs, output):
        x = args[0] if args else next(iter(kwargs.values()))
        if isinstance(module, TRANSPOSED_TYPES):
            positions = x.numel() // module.in_channels
        else:
            out_units = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            positions = output.numel() // out_units
        work.add(positions * module.weight.numel(), positions * kept, x)

    return hook


def _declared_hook(work: _Work, kept: dict[str, int]):
    def hook(module: nn.Module, args, output):
        dense, sparse = module.count_macs(args, output, kept)
        work.add(dense, sparse, args[0] if args else None)

    return hook


def _mha_hook(name: str, works: dict[str, _Work], kept: dict[str, int]):
    """Pre-hook on nn.MultiheadAttention: the projections and products follow from the input shapes."""

    def hook(module: nn.MultiheadAttention, args, kwargs):
        names = ("query", "key", "value")
        q, k, v = (args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names))
        e = module.embed_dim
        batch = 1 if q.dim() == 2 else q.shape[0 if module.batch_first else 1]
        target = q.shape[-2] if q.dim() == 2 else q.shape[1 if module.batch_first else 0]
        source = (k.numel() // module.kdim) // batch + (module.bias_k is not None) + module.add_zero_attn
        in_proj = works[f"{name}.in_proj"]
        for x, width, part in ((q, e, "q"), (k, module.kdim, "k"), (v, module.vdim, "v")):
            tokens = x.numel() // width
            in_proj.add(tokens * width * e, tokens * kept[part], x)
        tokens = q.numel() // e
        works[f"{name}.out_proj"].add(tokens * e * e, tokens * kept["out"], None)
        products = 2 * batch * target * source * e  # QK^T and AV over all heads
        works[f"{name}:products"].add(products, products, None)

    return hook


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _mha_kept(name: str, module: nn.MultiheadAttention, masks: Masks) -> dict[str, int]:
    """Kept weights of the q, k, v and output projections (a mask on in_proj_weight is split by rows)."""
    e = module.embed_dim

    def kept(param: str, weight: torch.Tensor, rows: slice = slice(None)) -> int:
        key = _join(name, param)
        return int(torch.count_nonzero(masks[key][rows])) if key in masks else weight[rows].numel()

    if module._qkv_same_embed_dim:
        parts = {p: kept("in_proj_weight", module.in_proj_weight, slice(i * e, (i + 1) * e))
                 for i, p in enumerate("qkv")}
    else:
        parts = {p: kept(f"{p}_proj_weight", getattr(module, f"{p}_proj_weight")) for p in "qkv"}
    return {**parts, "out": kept("out_proj.weight", module.out_proj.weight)}


_PRODUCTS = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "baddbmm", "addmm", "einsum",
             "scaled_dot_product_attention"}


def _einsum_macs(equation: str, operands) -> int:
    """MACs of a two-operand einsum: the product of the sizes of all its indices (ellipsis dims included)."""
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for spec, x in zip(inputs, operands, strict=True):
        if "..." in spec:  # name ellipsis dims from the right, so broadcast dims of both operands share a name
            free = x.dim() - (len(spec) - 3)
            spec = spec.replace("...", "".join(chr(0x100 + j) for j in reversed(range(free))))
        for letter, size in zip(spec, x.shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return math.prod(sizes.values())


def _product_macs(name: str, args, out) -> int | None:
    """MACs of an activation x activation product, or None when it is not one we count (or it was called with
    keyword tensors, which these hooks do not parse)."""
    if len(args) < (3 if name in ("baddbmm", "addmm", "scaled_dot_product_attention") else 2):
        return None
    if name == "einsum":
        operands = args[1:] if len(args) > 2 else list(args[1])
        return _einsum_macs(args[0], operands) if len(operands) == 2 else None
    if name == "scaled_dot_product_attention":
        q, k, v = args[:3]
        heads = q.numel() // (q.shape[-2] * q.shape[-1])
        return heads * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
    if not isinstance(out, torch.Tensor):
        return None
    left = args[1] if name in ("baddbmm", "addmm") else (args[1] if name == "__rmatmul__" else args[0])
    return out.numel() * left.shape[-1]


class _ProductCounter(TorchFunctionMode):
    """Counts activation x activation products outside Linear/ConvNd/MHA layers, by calling module."""

    def __init__(self, stack: list[str], inside_counted: list[int], works: dict[str, "_Work"]):
        super().__init__()
        self.stack, self.inside_counted, self.works = stack, inside_counted, works

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        if name in _PRODUCTS and not self.inside_counted[0] and self.stack:
            macs = _product_macs(name, args, out)
            if macs:
                self.works.setdefault(f"{self.stack[-1]}:products", _Work()).add(macs, macs, None)
        return out


# -- the public function ------------------------------------------------------------------------------------------
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


# -- rendering ----------------------------------------------------------------------------------------------------
def human(n: float) -> str:
    """4 significant digits with K/M/G: 60.97M, 235.2K, 724.4M."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{n:.4g}"


def times(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1f}x"


def _row_cells(row: LayerCount) -> list[str]:
    kept = describe_density(row.weight_density) if row.prunable else "-"
    density = f"{100 * row.input_density:.1f}% {row.density_source}" if row.input_density is not None else "-"
    if not row.macs_counted:
        macs = ["not counted"] * 3
    else:
        macs = [human(row.macs_dense), human(row.macs_weight_sparse), human(row.macs_weight_act_sparse)]
    return [row.name, row.kind, human(row.params), kept, density, *macs]


def aligned_table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Aligned columns with a rule under the header; columns in `right` (numbers) are right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def format_counts(counts: Counts) -> str:
    """Per-layer table with totals and reduction ratios, for the terminal."""
    header = ["layer", "type", "params", "weights", "input density", "MACs dense", "weight-sparse",
              "weight x act"]
    total_kept = describe_density(counts.weight_density) if counts.prunable else "-"
    total = ["total", "", human(counts.params), total_kept, "", human(counts.macs_dense),
             f"{human(counts.macs_weight_sparse)} ({times(counts.mac_reduction_weight)})",
             f"{human(counts.macs_weight_act_sparse)} ({times(counts.mac_reduction_weight_act)})"]
    lines = aligned_table(header, [_row_cells(r) for r in counts.layers] + [total], right={2, 5, 6, 7})
    lines.insert(len(lines) - 1, lines[1])
    lines += [
        "",
        f"parameters: {counts.params:,} total, {counts.prunable:,} prunable, {counts.kept:,} kept "
        f"({times(counts.param_reduction)} fewer)",
        f"MACs per sample: dense {counts.macs_dense:,}; weight-sparse {counts.macs_weight_sparse:,} "
        f"({times(counts.mac_reduction_weight)} fewer);",
        f"  weight x input-activation {round(counts.macs_weight_act_sparse):,} "
        f"({times(counts.mac_reduction_weight_act)} fewer), Han et al.'s approximation: weight-sparse x input density",
        f"example batch: {counts.batch_size} x {tuple(counts.example_shape[1:])}; 'weights' = kept fraction of the "
        "prunable weights",
        "not counted: bias adds, norms, pooling, activations, residual adds, softmax (see docs/counting.md)",
        *(f"note: {n}" for n in counts.notes),
    ]
    return "\n".join(lines)


# -- per-layer density tables (Han et al. 2015 format) ------------------------------------------------------------
class LayerDensity(NamedTuple):
    weight: float  # fraction of the layer's weights kept
    input_activation: float | None  # fraction of non-zero input activations; None = not in the table


HAN_NETWORKS = {"alexnet": "alexnet", "vgg-16": "vgg-16", "vgg16": "vgg-16", "lenet-300-100": "lenet-300-100",
                "lenet300": "lenet-300-100", "lenet-5": "lenet-5", "lenet5": "lenet-5"}


def han_csv_text() -> str:
    return (resources.files("ticketlab") / "reference" / "han2015_layers.csv").read_text()


def read_density_rows(text: str, source: str) -> list[dict[str, str]]:
    """CSV rows (comment lines start with #), with `layer` and `weights_pct` required."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    missing = {"layer", "weights_pct"} - set(reader.fieldnames or [])
    if missing:
        raise TicketlabError(f"density table {source} lacks column(s) {', '.join(sorted(missing))}; needs layer, "
                             f"weights_pct and optionally act_pct or input_act_pct (percent)")
    return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


def _percent(row: dict[str, str], column: str, source: str) -> float | None:
    """A percentage cell as a fraction; empty -> None. Weight densities must be > 0 (a layer keeps something)."""
    text = row.get(column, "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    low_ok = value > 0.0 if column == "weights_pct" else value >= 0.0
    if not (low_ok and value <= 100.0):
        interval = "(0, 100]" if column == "weights_pct" else "[0, 100]"
        raise TicketlabError(f"density table {source}, layer {row['layer']!r}: {column} must be a percentage in "
                             f"{interval}, got {text!r}")
    return value / 100.0


def load_density_table(path_or_network, network: str | None = None) -> dict[str, LayerDensity]:
    """{layer: (weight density, input-activation density)} from Han et al.'s table or a CSV file of that format.

    `path_or_network`: a network of the packaged Han et al. table (alexnet, vgg-16/vgg16, lenet-300-100/lenet300,
    lenet-5/lenet5) or a CSV path with columns layer, weights_pct and optionally act_pct or input_act_pct, in
    percent; lines starting with # are comments; a `total` row is skipped. act_pct is the density of the layer's
    OUTPUT (Han et al.'s convention): a layer's input density is the act_pct of the row before it, and the first
    row's input (the network input) is dense. input_act_pct, when present, gives input densities directly.
    A file with a `network` column holding several networks needs `network=`.
    """
    key = str(path_or_network).lower()
    if key in HAN_NETWORKS and not Path(path_or_network).exists():
        text, source, network = han_csv_text(), "han2015_layers.csv", HAN_NETWORKS[key]
    else:
        try:
            text, source = Path(path_or_network).read_text(), str(path_or_network)
        except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
            raise TicketlabError(f"density table {path_or_network!r} is neither a readable CSV file nor one of "
                                 f"the built-in networks: {', '.join(HAN_NETWORKS)}") from None
    rows = _select_network(read_density_rows(text, source), network, source)
    return _densities(rows, source)


def _select_network(rows: list[dict[str, str]], network: str | None, source: str) -> list[dict[str, str]]:
    rows = [r for r in rows if r["layer"].lower() != "total"]
    networks = list(dict.fromkeys(r.get("network", "") for r in rows))
    if network is None:
        if len(networks) > 1:
            raise TicketlabError(f"density table {source} holds several networks ({', '.join(networks)}); "
                                 "choose one with network=")
        return rows
    network = HAN_NETWORKS.get(network.lower(), network)
    if network not in networks:
        raise TicketlabError(f"density table {source} has no network {network!r}; it has {', '.join(networks)}")
    return [r for r in rows if r.get("network", "") == network]


def _densities(rows: list[dict[str, str]], source: str) -> dict[str, LayerDensity]:
    if not rows:
        raise TicketlabError(f"density table {source} has no layer rows")
    table: dict[str, LayerDensity] = {}
    previous_output: float | None = 1.0  # the network input is dense
    for row in rows:
        if row["layer"] in table:
            raise TicketlabError(f"density table {source} names layer {row['layer']!r} twice")
        weight = _percent(row, "weights_pct", source)
        if weight is None:
            raise TicketlabError(f"density table {source}, layer {row['layer']!r}: weights_pct is empty")
        if "input_act_pct" in row:
            given = _percent(row, "input_act_pct", source)
        else:
            given = previous_output if "act_pct" in row else None
        table[row["layer"]] = LayerDensity(weight, given)
        previous_output = _percent(row, "act_pct", source)
    return table


def _check_layers(model: nn.Module, layers) -> None:
    params = dict(model.named_parameters())
    known = [n[: -len(".weight")] for n in params if n.endswith(".weight")]
    for layer in layers:
        if f"{layer}.weight" not in params:
            raise TicketlabError(f"density table names layer {layer!r}{closest(layer, known)}, which the model "
                                 f"does not have; model layers: {', '.join(known)}")


def masks_from_density_table(model: nn.Module, table: dict, seed: int = 0, criterion: str = "magnitude") -> Masks:
    """Masks keeping exactly round_half_up(density x numel) weights of each table layer; other weights are kept.

    `table`: {layer: LayerDensity or weight density}. Which weights are kept: the largest |w| of the model's
    current weights (`criterion="magnitude"`, ties to the lower index) or a seeded random choice
    (`criterion="random"`), via `ticketlab.pruning`. On the meta device weights have no values, so the first
    entries (row-major) are kept: the counts are exact, the positions arbitrary, which is all counting needs.
    """
    _check_layers(model, table)
    densities = {f"{layer}.weight": float(d[0] if isinstance(d, tuple) else d) for layer, d in table.items()}
    params = dict(model.named_parameters())
    names = list(dict.fromkeys(prunable_names(model) + list(densities)))
    masks = Masks.ones(model, names=names)
    kept = {n: round_half_up(d * params[n].numel()) for n, d in densities.items()}
    if any(p.is_meta for p in params.values()):
        return Masks({**masks, **{n: _first(params[n].shape, k) for n, k in kept.items()}})
    rates = {n: (params[n].numel() - k) / params[n].numel() for n, k in kept.items() if k > 0}
    spec = PruneSpec(criterion=criterion, scope="layer", rate=0.0, rates=rates, seed=seed)
    pruned = prune(model, masks, spec)
    return Masks({**pruned, **{n: _first(params[n].shape, 0) for n, k in kept.items() if k == 0}})


def _first(shape: torch.Size, kept: int) -> torch.Tensor:
    mask = torch.zeros(math.prod(shape), dtype=torch.bool)
    mask[:kept] = True
    return mask.reshape(shape)
