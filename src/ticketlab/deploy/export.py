"""Compact checkpoints: a pruned model in (close to) the fewest bytes, loadable into a plain dense model.

One safetensors file. Every tensor of the state dict that the masks cover ("pruned tensor") is stored as its kept
values (in the tensor's own dtype) plus either
  bitmask  the mask, bit-packed (1 bit per weight; `ticketlab.core.masks.pack_bits`), or
  csr      the tensor viewed as rows x columns (rows = first dimension), with int16 column indices when the columns
           fit (else int32) and int32 row pointers (int64 past 2**31 kept weights);
`auto` takes whichever is smaller, tensor by tensor (csr wins below ~6% kept). CSR needs rows, so it refuses tensors
of fewer than 2 dimensions. Every other tensor (biases, BatchNorm, unpruned layers) is stored dense, as is.
The metadata (JSON) holds the format version, each tensor's encoding, shape and dtype, and the source run/level.

The floor a format is measured against: kept values x 4 bytes + 1 bit per weight of the pruned tensors + the dense
tensors at 4 bytes per element (their own element size, for other dtypes).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch import nn

from ticketlab.core.files import load_tensors, save_tensors
from ticketlab.core.masks import Masks, describe_density, pack_bits, unpack_bits
from ticketlab.core.model_state import load_state
from ticketlab.errors import TicketlabError, unknown

FORMAT = "ticketlab-export/1"
FORMATS = ("auto", "bitmask", "csr")
ENCODINGS = ("dense", "bitmask", "csr")
INT16_MAX = 2**15 - 1


@dataclass
class ExportReport:
    """What `export_compact` wrote, and how its size compares with the dense checkpoint and with the floor."""

    path: Path
    bytes: int
    dense_bytes: int
    floor_bytes: int
    density: float
    encodings: dict[str, str] = field(default_factory=dict)

    @property
    def vs_dense(self) -> float:
        return self.bytes / self.dense_bytes

    @property
    def vs_floor(self) -> float:
        return self.bytes / self.floor_bytes

    def format(self) -> str:
        used = ", ".join(f"{n} {e}" for n, e in self.encodings.items())
        return "\n".join([
            f"wrote {self.path}: {_size(self.bytes)}, pruned tensors {describe_density(self.density)}",
            f"  vs dense checkpoint ({_size(self.dense_bytes)}): {self.vs_dense:.3f}x "
            f"({self.dense_bytes / self.bytes:.1f}x smaller)",
            f"  vs floor ({_size(self.floor_bytes)}): {self.vs_floor:.3f}x",
            f"  encodings: {used or 'none (nothing pruned)'}",
        ])


def _size(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


# -- sizes ----------------------------------------------------------------------------------------------------
def floor_bytes(state: dict[str, torch.Tensor], masks: Masks) -> int:
    """Kept values x 4 bytes + 1 bit per pruned-tensor weight (rounded up per tensor) + dense tensors as they are."""
    total = 0
    for name, t in state.items():
        if name in masks:
            total += 4 * int(masks[name].sum()) + math.ceil(t.numel() / 8)
        else:
            total += t.numel() * t.element_size()
    return total


def dense_bytes(state: dict[str, torch.Tensor]) -> int:
    """Size of the safetensors file of the full state dict (what `ticketlab run` writes as final.safetensors)."""
    return len(st_save({k: v.detach().contiguous().cpu() for k, v in state.items()}))


# -- encoding -------------------------------------------------------------------------------------------------
def _csr_parts(values_2d_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column indices and row pointers of the kept entries of a 2-D mask, in the smallest integer types."""
    rows, cols = values_2d_mask.shape
    index_dtype = torch.int16 if cols - 1 <= INT16_MAX else torch.int32
    col = values_2d_mask.nonzero()[:, 1].to(index_dtype)
    counts = values_2d_mask.sum(dim=1)
    rowptr = torch.zeros(rows + 1, dtype=torch.int64)
    rowptr[1:] = counts.cumsum(0)
    return col, rowptr.to(torch.int32) if int(rowptr[-1]) < 2**31 else rowptr


def _encoded_bytes(mask: torch.Tensor, element_size: int) -> dict[str, int]:
    """Bytes each encoding needs for one pruned tensor (without the file header)."""
    kept = int(mask.sum())
    sizes = {"bitmask": kept * element_size + math.ceil(mask.numel() / 8)}
    if mask.dim() >= 2:
        cols = mask[0].numel()
        sizes["csr"] = kept * (element_size + (2 if cols - 1 <= INT16_MAX else 4)) + (mask.shape[0] + 1) * 4
    return sizes


def choose_encoding(name: str, mask: torch.Tensor, element_size: int, fmt: str) -> str:
    """`bitmask` or `csr` for one pruned tensor; `auto` picks the smaller."""
    sizes = _encoded_bytes(mask, element_size)
    if fmt == "auto":
        return min(sizes, key=sizes.__getitem__)
    if fmt not in sizes:
        raise TicketlabError(f"format {fmt!r} cannot store tensor {name!r} of shape {tuple(mask.shape)}: csr needs "
                             "at least 2 dimensions (rows = first dimension); use --format auto or bitmask")
    return fmt


def encode(state: dict[str, torch.Tensor], masks: Masks, fmt: str = "auto") -> tuple[dict, dict]:
    """(tensors, layout) of a compact checkpoint: layout[name] = {encoding, shape, dtype}."""
    if fmt not in FORMATS:
        raise unknown("export format", fmt, FORMATS)
    missing = [n for n in masks if n not in state]
    if missing:
        raise TicketlabError(f"mask {missing[0]!r} names no tensor of the weights")
    tensors, layout = {}, {}
    for name, t in state.items():
        t = t.detach().cpu()
        entry = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
        if name not in masks:
            tensors[name], entry["encoding"] = t, "dense"
        else:
            mask = masks[name].cpu()
            if mask.shape != t.shape:
                raise TicketlabError(f"mask {name!r} has shape {tuple(mask.shape)}, the tensor {tuple(t.shape)}")
            encoding = entry["encoding"] = choose_encoding(name, mask, t.element_size(), fmt)
            tensors[f"{name}.values"] = t[mask]
            if encoding == "bitmask":
                tensors[f"{name}.mask"] = pack_bits(mask)
            else:
                tensors[f"{name}.col"], tensors[f"{name}.rowptr"] = _csr_parts(mask.reshape(mask.shape[0], -1))
        layout[name] = entry
    return tensors, layout


def export_compact(state: dict[str, torch.Tensor], masks: Masks, path, fmt: str = "auto",
                   source: dict | None = None) -> ExportReport:
    """Write a compact checkpoint of `state` (a state dict) pruned by `masks`; returns sizes and encodings."""
    tensors, layout = encode(state, masks, fmt)
    meta = {"format": FORMAT, "layout": json.dumps(layout), "source": json.dumps(source or {})}
    save_tensors(path, tensors, metadata=meta)
    return ExportReport(Path(path), Path(path).stat().st_size, dense_bytes(state), floor_bytes(state, masks),
                        masks.density(), {n: layout[n]["encoding"] for n in masks})


def export_run(run_dir, level: int | None, path=None, fmt: str = "auto", overwrite: bool = False) -> ExportReport:
    """Export a level of a run directory: its final weights and masks. `level=None` = the last finished level; an
    existing file is replaced only with `overwrite`."""
    run_dir = Path(run_dir)
    stage = _level_dir(run_dir, level)
    masks_path, final_path = stage / "masks.safetensors", stage / "final.safetensors"
    if not masks_path.exists():
        raise TicketlabError(f"{stage} has no masks.safetensors: not a ticketlab run level, or written by an older "
                             "version")
    if not final_path.exists():
        raise TicketlabError(f"{stage} has no final.safetensors: the level has not finished training")
    state, _ = load_tensors(final_path)
    masks = Masks.load(masks_path)
    level = int(stage.name[6:])
    path = Path(path) if path else Path(f"{run_dir.resolve().name}-level_{level:02d}.safetensors")
    if path.is_dir():
        raise TicketlabError(f"--out {path} is a directory; give a file name, e.g. "
                             f"{path / (run_dir.resolve().name + f'-level_{level:02d}.safetensors')}")
    if path.exists() and not overwrite:
        raise TicketlabError(f"{path} already exists; choose another --out, or replace it with --force")
    return export_compact(state, masks, path, fmt, source={"run": str(run_dir), "level": level})


def _level_dir(run_dir: Path, level: int | None) -> Path:
    if not run_dir.is_dir():
        raise TicketlabError(f"run directory not found: {run_dir}")
    levels = sorted(int(p.name[6:]) for p in run_dir.glob("level_*") if p.name[6:].isdigit())
    if not levels:
        raise TicketlabError(f"{run_dir} is not a ticketlab run directory (no level_NN folders)")
    if level is None:
        finished = [lv for lv in levels if (run_dir / f"level_{lv:02d}" / "final.safetensors").exists()]
        if not finished:
            raise TicketlabError(f"{run_dir} has no finished level yet")
        level = finished[-1]
    if level not in levels:
        raise TicketlabError(f"{run_dir} has no level {level}; levels: {', '.join(map(str, levels))}")
    return run_dir / f"level_{level:02d}"


# -- decoding -------------------------------------------------------------------------------------------------
def read_compact(path) -> tuple[dict[str, torch.Tensor], dict[str, dict], Masks]:
    """(dense state dict, layout, masks of the pruned tensors) of a compact checkpoint; corrupt files raise."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != FORMAT:
        raise TicketlabError(f"{path} is not a ticketlab compact checkpoint (format {meta.get('format')!r}, "
                             f"expected {FORMAT!r})")
    try:
        layout = json.loads(meta["layout"])
        state, masks = {}, {}
        for name, entry in layout.items():
            state[name], mask = _decode(name, entry, tensors)
            if mask is not None:
                masks[name] = mask
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        if isinstance(e, TicketlabError):
            raise TicketlabError(f"corrupt compact checkpoint {path}: {e}") from None
        raise TicketlabError(f"corrupt compact checkpoint {path}: {type(e).__name__} {e}") from None
    return state, layout, Masks(masks)


def _decode(name: str, entry: dict, tensors: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    shape, encoding = [int(s) for s in entry["shape"]], entry["encoding"]
    dtype = getattr(torch, entry["dtype"])
    if encoding == "dense":
        t = tensors[name]
        _expect(list(t.shape) == shape and t.dtype == dtype, f"tensor {name!r} does not match its layout entry")
        return t, None
    if encoding not in ENCODINGS:
        raise TicketlabError(f"tensor {name!r} has unknown encoding {encoding!r}")
    values = tensors[f"{name}.values"]
    _expect(values.dim() == 1 and values.dtype == dtype, f"values of {name!r} have the wrong type")
    numel = math.prod(shape)
    if encoding == "bitmask":
        packed = tensors[f"{name}.mask"]
        _expect(packed.dtype == torch.uint8 and packed.numel() == math.ceil(numel / 8), f"mask of {name!r} is bad")
        mask = unpack_bits(packed, shape)
    else:
        mask = _csr_mask(name, shape, tensors[f"{name}.col"], tensors[f"{name}.rowptr"])
    _expect(int(mask.sum()) == values.numel(), f"{name!r} has {values.numel()} values for {int(mask.sum())} kept")
    dense = torch.zeros(shape, dtype=dtype)
    dense[mask] = values
    return dense, mask


def _csr_mask(name: str, shape: list[int], col: torch.Tensor, rowptr: torch.Tensor) -> torch.Tensor:
    """The bool mask of CSR indices, after checking that they are well formed (no out-of-range writes)."""
    _expect(len(shape) >= 2 and rowptr.numel() == shape[0] + 1, f"row pointers of {name!r} do not fit {shape}")
    rows, cols = shape[0], math.prod(shape[1:])
    rowptr, col = rowptr.long(), col.long()
    counts = rowptr.diff()
    ok = (rowptr[0] == 0 and rowptr[-1] == col.numel() and bool((counts >= 0).all())
          and bool(((col >= 0) & (col < cols)).all()))
    _expect(ok, f"CSR indices of {name!r} are out of range")
    row = torch.repeat_interleave(torch.arange(rows), counts)
    mask = torch.zeros(rows * cols, dtype=torch.bool)
    mask[row * cols + col] = True
    _expect(int(mask.sum()) == col.numel(), f"CSR indices of {name!r} repeat an entry")
    return mask.reshape(shape)


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise TicketlabError(message)


def load_compact_state_dict(path) -> dict[str, torch.Tensor]:
    """The dense state dict stored in a compact checkpoint (pruned weights are zeros)."""
    return read_compact(path)[0]


def load_compact_masks(path) -> Masks:
    """The masks of the pruned tensors stored in a compact checkpoint."""
    return read_compact(path)[2]


def load_compact(path, model: nn.Module) -> nn.Module:
    """Fill `model` (a plain dense model of the same architecture) from a compact checkpoint; returns it.

    A different architecture is refused, naming the first tensor (in the model's order) that does not match."""
    return load_state(model, load_compact_state_dict(path), path)
