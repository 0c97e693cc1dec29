"""Masks: one boolean tensor per prunable parameter, keyed by the parameter's name (True = kept)."""

import fnmatch
import json
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

from ticketlab.core.files import load_tensors, save_tensors
from ticketlab.errors import TicketlabError

DEFAULT_PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
FORMAT = "ticketlab-masks/1"


def match_names(names: Iterable[str], patterns: Iterable[str], what: str = "pattern") -> list[str]:
    """Names matching any of the patterns (exact name or fnmatch glob); a pattern matching nothing is an error."""
    names = list(names)
    found: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise TicketlabError(f"{what} {pattern!r} matches no parameter; parameters: {', '.join(names)}")
        found += [h for h in hits if h not in found]
    return [n for n in names if n in found]


def prunable_names(
    model: nn.Module,
    types: tuple[type[nn.Module], ...] = DEFAULT_PRUNABLE_TYPES,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> list[str]:
    """Names of the prunable weights: by default the `weight` of every Linear and ConvNd, and the parameters a
    module declares in its class attribute `PRUNABLE_PARAMETERS` (e.g. a graph's learned edge mask).

    `include` (names or globs) replaces the type rule; `exclude` (names or globs) removes names after it.
    """
    params = dict(model.named_parameters())
    if include is not None:
        chosen = match_names(params, include, "include pattern")
    else:
        chosen = [
            _join(prefix, name)
            for prefix, module in model.named_modules()
            for name in _declared(module, types)
        ]
        chosen = [n for n in chosen if n in params]
    excluded = set(match_names(chosen, exclude, "exclude pattern")) if exclude else set()
    return [n for n in chosen if n not in excluded]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _declared(module: nn.Module, types: tuple[type[nn.Module], ...]) -> list[str]:
    """The module's own prunable parameters: `weight` of the given types, plus PRUNABLE_PARAMETERS."""
    own = ["weight"] if isinstance(module, types) and getattr(module, "weight", None) is not None else []
    return own + [n for n in getattr(type(module), "PRUNABLE_PARAMETERS", ()) if n not in own]


def _shape_mismatch(model: nn.Module, name: str, mask_shape: tuple, param_shape: tuple) -> str:
    """A module may explain a mismatch in its own terms (`describe_mask_mismatch`), e.g. edges of a graph."""
    prefix, _, local = name.rpartition(".")
    explain = getattr(model.get_submodule(prefix), "describe_mask_mismatch", None)
    message = explain(local, mask_shape) if explain is not None else None
    return message or f"mask {name!r} has shape {mask_shape}, parameter has {param_shape}"


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Bit-pack a bool tensor into uint8, 8 weights per byte, most significant bit first."""
    bits = mask.reshape(-1).to(torch.uint8)
    bits = torch.nn.functional.pad(bits, (0, (-bits.numel()) % 8)).reshape(-1, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
    return (bits * weights).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: list[int]) -> torch.Tensor:
    numel = 1
    for s in shape:
        numel *= s
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8)
    bits = (packed.reshape(-1, 1) >> shifts) & 1
    return bits.reshape(-1)[:numel].bool().reshape(shape)


class Masks(Mapping[str, torch.Tensor]):
    """An immutable-by-convention mapping name -> bool tensor. Operations return new Masks."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        for name, t in tensors.items():
            if not isinstance(t, torch.Tensor) or t.dtype != torch.bool:
                kind = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
                raise TicketlabError(f"mask {name!r} must be a bool tensor, got {kind}")
        self._t = dict(tensors)

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def ones(cls, model: nn.Module, names: Iterable[str] | None = None, **select) -> "Masks":
        """All-True masks for `names`, or for `prunable_names(model, **select)`."""
        params = dict(model.named_parameters())
        names = prunable_names(model, **select) if names is None else list(names)
        for n in names:
            if n not in params:
                raise TicketlabError(f"model has no parameter {n!r}")
        return cls({n: torch.ones_like(params[n], dtype=torch.bool) for n in names})

    @classmethod
    def from_model_zeros(cls, model: nn.Module, names: Iterable[str] | None = None) -> "Masks":
        """Masks that keep exactly the non-zero entries (for importing weights pruned elsewhere)."""
        params = dict(model.named_parameters())
        names = prunable_names(model) if names is None else list(names)
        return cls({n: params[n].detach() != 0 for n in names})

    # -- mapping --------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._t[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def __repr__(self) -> str:
        return f"Masks({len(self)} tensors, {describe_density(self.density())})"

    # -- counts ---------------------------------------------------------------------------------------
    def kept(self) -> dict[str, int]:
        return {n: int(t.sum()) for n, t in self._t.items()}

    def numels(self) -> dict[str, int]:
        return {n: t.numel() for n, t in self._t.items()}

    def densities(self) -> dict[str, float]:
        return {n: int(t.sum()) / max(t.numel(), 1) for n, t in self._t.items()}

    def density(self) -> float:
        """Fraction of the masked weights that are kept."""
        total = sum(self.numels().values())
        return sum(self.kept().values()) / total if total else 1.0

    def sparsity(self) -> float:
        return 1.0 - self.density()

    def model_density(self, model: nn.Module) -> float:
        """Fraction of *all* model parameters kept, unprunable ones counting as kept."""
        total = sum(p.numel() for p in model.parameters())
        pruned = sum(t.numel() - int(t.sum()) for t in self._t.values())
        return (total - pruned) / total if total else 1.0

    # -- checks and application -----------------------------------------------------------------------
    def check(self, model: nn.Module) -> None:
        """Raise if a mask names a parameter the model lacks or has a different shape."""
        params = dict(model.named_parameters())
        for name, t in self._t.items():
            if name not in params:
                raise TicketlabError(f"mask {name!r} names no parameter of the model")
            if tuple(t.shape) != tuple(params[name].shape):
                raise TicketlabError(_shape_mismatch(model, name, tuple(t.shape), tuple(params[name].shape)))

    @torch.no_grad()
    def apply(self, model: nn.Module) -> nn.Module:
        """Zero the pruned weights of `model` in place (same Parameter objects); returns the model."""
        self.check(model)
        params = dict(model.named_parameters())
        for name, t in self._t.items():
            p = params[name]  # (where, not mul_: torch multiplies by a bool mask at half this speed)
            torch.where(t.to(p.device), p, torch.zeros((), dtype=p.dtype, device=p.device), out=p)
        return model

    # -- algebra --------------------------------------------------------------------------------------
    def _zip(self, other: "Masks", op) -> "Masks":
        if set(self) != set(other):
            diff = sorted(set(self) ^ set(other))
            raise TicketlabError(f"masks cover different tensors, e.g. {diff[0]!r}")
        out = {}
        for n in self._t:
            if self._t[n].shape != other[n].shape:
                raise TicketlabError(f"mask {n!r} shapes differ: {tuple(self._t[n].shape)} vs {tuple(other[n].shape)}")
            out[n] = op(self._t[n], other[n].to(self._t[n].device))
        return Masks(out)

    def __and__(self, other: "Masks") -> "Masks":
        return self._zip(other, torch.logical_and)

    def __or__(self, other: "Masks") -> "Masks":
        return self._zip(other, torch.logical_or)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Masks) or set(self) != set(other):
            return False
        return all(self._t[n].shape == other[n].shape and torch.equal(self._t[n], other[n].to(self._t[n].device))
                   for n in self._t)

    __hash__ = None  # mutable tensors inside

    def overlap(self, other: "Masks") -> float:
        """Fraction of this mask's kept weights also kept by `other` (1.0 = contained)."""
        both = (self & other).kept()
        mine = sum(self.kept().values())
        return sum(both.values()) / mine if mine else 1.0

    def to(self, device: torch.device | str) -> "Masks":
        return Masks({n: t.to(device) for n, t in self._t.items()})

    def clone(self) -> "Masks":
        return Masks({n: t.clone() for n, t in self._t.items()})

    # -- files ----------------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Safetensors with bit-packed masks (1 bit per weight) and JSON metadata of names and shapes."""
        shapes = {n: list(t.shape) for n, t in self._t.items()}
        meta = {"format": FORMAT, "shapes": json.dumps(shapes)}
        save_tensors(path, {n: pack_bits(t.cpu()) for n, t in self._t.items()}, metadata=meta)

    @classmethod
    def load(cls, path) -> "Masks":
        packed, meta = load_tensors(path)
        if meta.get("format") != FORMAT:
            raise TicketlabError(f"{path} is not a ticketlab mask file (format {meta.get('format')!r})")
        shapes = _shapes(meta, path)
        if set(shapes) != set(packed):
            raise TicketlabError(f"corrupt mask file {path}: metadata and tensors name different masks")
        out = {}
        for name, shape in shapes.items():
            numel = 1
            for s in shape:
                numel *= s
            if packed[name].dtype != torch.uint8 or packed[name].numel() != (numel + 7) // 8:
                raise TicketlabError(f"corrupt mask file {path}: tensor {name!r} has the wrong size for {shape}")
            out[name] = unpack_bits(packed[name], shape)
        return cls(out)


def _shapes(meta: dict, path) -> dict[str, list[int]]:
    """The `shapes` metadata of a mask file: a mapping of names to lists of at most 8 non-negative integers."""
    try:
        shapes = json.loads(meta["shapes"])
    except (KeyError, json.JSONDecodeError, RecursionError):
        shapes = None
    if not isinstance(shapes, dict) or not all(
            isinstance(shape, list) and len(shape) <= 8
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40 for s in shape)
            for shape in shapes.values()):
        raise TicketlabError(f"corrupt mask file {path}: bad shape metadata (a mapping of names to lists of sizes "
                             ">= 0 expected); write it again with Masks.save")
    return shapes


def describe_density(density: float) -> str:
    """The one way ticketlab prints a density: 'kept 21.1% (sparsity 78.9%)'."""
    return f"kept {100 * density:.1f}% (sparsity {100 * (1 - density):.1f}%)"
