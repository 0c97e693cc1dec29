"""`ticketlab bench [--quick] [--only inference|export] [--threads N]`: speed and size ratios on this machine.

Everything is measured in the same process and printed as ratios, with the thread count:
  inference  sparse vs dense inference time (ticketlab.sparse_inference.sparsify) at several densities, batch 1 and
             64, for LeNet-300-100 and VGG-16's fc layers (fc6 25088x4096, fc7 4096x4096, fc8 4096x1000, built
             alone, not the whole VGG); per layer also our numba kernel against torch's CSR kernel.
  export     compact checkpoint size (ticketlab.export) vs the dense checkpoint and vs the floor.
Masks are layer-wise magnitude masks of seeded random weights (the speed and size do not depend on the values).
The benchmarks/ scripts call the same functions with the full settings.
"""

import math
import tempfile
from collections import OrderedDict
from pathlib import Path

from ..cli import quiet_default

DENSITIES = (0.5, 0.2, 0.1, 0.05, 0.02)
QUICK_DENSITIES = (0.1, 0.02)
BATCHES = (1, 64)
SECTIONS = ("inference", "export")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure sparse inference speed and compact checkpoint size on this machine",
        description="Time sparse against dense inference (LeNet-300-100, VGG-16 fc layers) at 50/20/10/5/2% of "
                    "weights kept, batch 1 and 64, and measure compact checkpoint sizes; prints ratios measured "
                    "in this run. --quick: 10% and 2% only, LeNet-300-100 and fc7 only, shorter timings.")
    parser.add_argument("--quick", action="store_true", help="a subset that runs in about 15 seconds")
    parser.add_argument("--quiet", action="store_true", default=quiet_default(), help="no progress bar")
    parser.add_argument("--only", choices=SECTIONS, default=None, help="run one section only")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch (and numba) threads (default: torch's default, the number of cores)")
    parser.set_defaults(run=run)


def run(args) -> int:
    import torch

    from ..errors import TicketlabError

    if args.threads is not None:
        if args.threads < 1:
            raise TicketlabError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.only in (None, "inference"):
        print(inference_report(quick=args.quick, progress=not args.quiet))
    if args.only in (None, "export"):
        print(export_report(quick=args.quick))
    return 0


# -- models ---------------------------------------------------------------------------------------------------
def lenet300():
    from ..models import build_model

    return build_model("lenet300", seed=0).eval()


def vgg16_fc(layers=("fc6", "fc7", "fc8")):
    """VGG-16's classifier layers alone (ReLU between them), seeded random weights."""
    import torch
    from torch import nn

    shapes = {"fc6": (4096, 25088), "fc7": (4096, 4096), "fc8": (1000, 4096)}
    generator = torch.Generator().manual_seed(0)
    modules = []
    for i, name in enumerate(layers):
        out_f, in_f = shapes[name]
        linear = nn.utils.skip_init(nn.Linear, in_f, out_f)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(out_f, in_f, generator=generator) / math.sqrt(in_f))
            linear.bias.copy_(torch.randn(out_f, generator=generator) * 0.01)
        modules.append((name, linear))
        if i < len(layers) - 1:
            modules.append((f"relu_{name}", nn.ReLU()))
    model = nn.Sequential(OrderedDict(modules)).eval()
    model.input_shape = (shapes[layers[0]][1],)
    return model


def layerwise_masks(model, density: float):
    from ..masks import Masks
    from ..pruning import PruneSpec, prune

    return prune(model, Masks.ones(model), PruneSpec(criterion="magnitude", scope="layer", rate=1 - density))


# -- timing ---------------------------------------------------------------------------------------------------
def inference_rows(models: dict, densities=DENSITIES, batches=BATCHES, min_time: float = 0.2, progress=False):
    """(model rows, layer rows): whole-model dense vs sparsified time, and each layer's kernel timings."""
    import torch
    from tqdm import tqdm

    from ..sparse_inference import FusedChain, available_kernels, layer_choices, sparsify, time_calls

    model_rows, layer_rows = [], []
    generator = torch.Generator().manual_seed(0)
    bar = tqdm(total=len(models) * len(densities), desc="sparse inference", disable=not progress, leave=False)
    for model_name, build in models.items():
        dense = build()
        for density in densities:
            bar.set_postfix_str(f"{model_name} kept {100 * density:g}%")
            masks = layerwise_masks(dense, density)
            masks.apply(dense)
            fast = sparsify(dense, masks, batch_sizes=batches, min_time=min_time / 4)
            choices = {(c.name, c.batch): c.kernel for c in layer_choices(fast)}
            fused = [f"{m.names[0]}..{m.names[-1]}" for m in fast.modules() if isinstance(m, FusedChain) and m.enabled]
            for batch in batches:
                x = torch.randn(batch, *dense.input_shape, generator=generator)
                with torch.no_grad():
                    t = time_calls({"dense": lambda x=x, m=dense: m(x), "sparse": lambda x=x, m=fast: m(x)},
                                         min_time)
                kernels = ", ".join(f"{n} {k}" for (n, b), k in choices.items() if b == batch)
                if batch == 1 and fused:
                    kernels = f"fused chain {', '.join(fused)} (per layer when not fused: {kernels})"
                model_rows.append({"model": model_name, "density": density, "batch": batch, "dense": t["dense"],
                                   "sparse": t["sparse"], "kernels": kernels})
            for c in layer_choices(fast):
                layer_rows.append({"model": model_name, "layer": c.name, "density": density, "batch": c.batch,
                                   **{k: c.timings.get(k, math.nan) for k in available_kernels()},
                                   "chosen": c.kernel})
            dense = build()  # fresh weights for the next density (masks shrink from the dense net)
            bar.update()
    bar.close()
    return model_rows, layer_rows


def format_inference(model_rows, layer_rows) -> str:
    import torch

    from ..masks import describe_density

    lines = [f"sparse inference vs dense, {torch.get_num_threads()} threads, time per batch (best of many short "
             "interleaved rounds); speedup = dense / sparse (>1: sparse faster)",
             f"{'model':<10} {'kept':<28} {'batch':>5} {'dense ms':>9} {'sparse ms':>9} {'speedup':>8}  kernels"]
    for r in model_rows:
        lines.append(f"{r['model']:<10} {describe_density(r['density']):<28} {r['batch']:>5} "
                     f"{1e3 * r['dense']:9.3f} {1e3 * r['sparse']:9.3f} {r['dense'] / r['sparse']:7.2f}x  "
                     f"{r['kernels']}")
    if layer_rows:
        lines += ["", "per layer: each kernel's speedup over dense; ours/torch = torch-csr time / best numba time",
                  f"{'layer':<14} {'kept':>6} {'batch':>5} {'dense us':>9} {'torch-csr':>9} {'numba':>8} "
                  f"{'numba-par':>9} {'ours/torch':>10}  chosen"]
        for r in layer_rows:
            ours = min((r[k] for k in ("numba", "numba-parallel") if not math.isnan(r.get(k, math.nan))),
                       default=math.nan)
            lines.append(f"{r['model'] + '.' + r['layer']:<14} {100 * r['density']:5.1f}% {r['batch']:>5} "
                         f"{1e6 * r['dense']:9.1f} {_ratio(r['dense'], r['torch-csr']):>9} "
                         f"{_ratio(r['dense'], r.get('numba', math.nan)):>8} "
                         f"{_ratio(r['dense'], r.get('numba-parallel', math.nan)):>9} "
                         f"{_ratio(r['torch-csr'], ours):>10}  {r['chosen']}")
    return "\n".join(lines)


def _ratio(a: float, b: float) -> str:
    """'2.41x', or '-' for a kernel that was not measured (numba missing; numba-parallel on one thread)."""
    return "-" if math.isnan(b) else f"{a / b:.2f}x"


def inference_report(quick: bool = False, progress: bool = False) -> str:
    if quick:
        models = {"lenet300": lenet300, "vgg-fc7": lambda: vgg16_fc(("fc7",))}
        rows = inference_rows(models, QUICK_DENSITIES, BATCHES, min_time=0.05, progress=progress)
    else:
        rows = inference_rows({"lenet300": lenet300, "vgg16-fc": vgg16_fc}, DENSITIES, BATCHES, progress=progress)
    return format_inference(*rows)


# -- export size ----------------------------------------------------------------------------------------------
def export_rows(models: dict, densities=DENSITIES, formats=("auto", "bitmask", "csr")) -> list[dict]:
    from ..export import export_compact

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, build in models.items():
            model = build()
            for density in densities:
                masks = layerwise_masks(model, density)
                state = {k: v * masks[k] if k in masks else v for k, v in model.state_dict().items()}
                for fmt in formats:
                    report = export_compact(state, masks, Path(tmp) / "x.safetensors", fmt)
                    rows.append({"model": model_name, "density": density, "format": fmt, "bytes": report.bytes,
                                 "vs_dense": report.vs_dense, "vs_floor": report.vs_floor})
    return rows


def format_export(rows) -> str:
    from ..masks import describe_density

    lines = ["compact checkpoint size: vs dense = bytes / dense safetensors; vs floor = bytes / (kept x 4 B + "
             "1 bit per pruned-tensor weight + dense tensors); target <= 1.15x the floor",
             f"{'model':<10} {'kept':<28} {'format':<8} {'bytes':>11} {'vs dense':>9} {'vs floor':>9}"]
    for r in rows:
        lines.append(f"{r['model']:<10} {describe_density(r['density']):<28} {r['format']:<8} {r['bytes']:>11,} "
                     f"{r['vs_dense']:8.3f}x {r['vs_floor']:8.3f}x")
    return "\n".join(lines)


def export_report(quick: bool = False) -> str:
    from ..models import build_model

    models = {"lenet300": lenet300}
    if not quick:
        models["conv4"] = lambda: build_model("conv4", seed=0)
    return format_export(export_rows(models, QUICK_DENSITIES if quick else DENSITIES))
