"""Sparse against dense inference: whole models and each layer's kernels, at several densities and batch sizes."""

import math

from ticketlab.bench.workloads import BATCHES, DENSITIES, QUICK_DENSITIES, layerwise_masks, lenet300, vgg16_fc


def inference_rows(models: dict, densities=DENSITIES, batches=BATCHES, min_time: float = 0.2, progress=False):
    """(model rows, layer rows): whole-model dense vs sparsified time, and each layer's kernel timings."""
    import torch
    from tqdm import tqdm

    from ticketlab.deploy.sparse_inference import FusedChain, available_kernels, layer_choices, sparsify, time_calls

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

    from ticketlab.core.masks import describe_density

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
