"""Sparse against dense inference: whole models and each layer's kernels, at several densities and batch sizes."""

import math

from ticketlab.bench.workloads import BATCHES, DENSITIES, QUICK_DENSITIES, layerwise_masks, lenet300, vgg16_fc

REPEATS = 3  # interleaved timings per model, density and batch: enough for a median, a range and a noise figure


def inference_rows(models: dict, densities=DENSITIES, batches=BATCHES, min_time: float = 0.2, progress=False,
                   fuse: bool = True):
    """(model rows, layer rows): whole-model dense vs sparsified time (`fuse`: sparsify's), and each layer's kernel
    timings."""
    import statistics

    import torch
    from tqdm import tqdm

    from ticketlab.bench.noise import paired_ratio
    from ticketlab.deploy.sparse_inference import (
        DIRECT,
        ConvBlock,
        FusedChain,
        available_kernels,
        layer_choices,
        sparsify,
        time_calls,
    )

    model_rows, layer_rows = [], []
    generator = torch.Generator().manual_seed(0)
    bar = tqdm(total=len(models) * len(densities), desc="sparse inference", disable=not progress, leave=False)
    for model_name, build in models.items():
        dense = build()
        for density in densities:
            bar.set_postfix_str(f"{model_name} kept {100 * density:g}%")
            masks = layerwise_masks(dense, density)
            masks.apply(dense)
            fast = sparsify(dense, masks, batch_sizes=batches, min_time=min_time / 4, fuse=fuse)
            choices = {(c.name, c.batch): c.kernel for c in layer_choices(fast)}
            fused = [f"{m.names[0]}..{m.names[-1]}" for m in fast.modules() if isinstance(m, FusedChain) and m.enabled]
            after = {n: " + ReLU, pool" if m.pool else " + ReLU"  # fused into the direct kernel's call
                     for n, m in fast.named_modules() if isinstance(m, ConvBlock)}
            for batch in batches:
                x = torch.randn(batch, *dense.input_shape, generator=generator)
                with torch.no_grad():  # REPEATS interleaved timings, each the best of its short rounds
                    t = [time_calls({"dense": lambda x=x, m=dense: m(x), "sparse": lambda x=x, m=fast: m(x)},
                                    min_time / REPEATS) for _ in range(REPEATS)]
                kernels = ", ".join(f"{n} {k}{after.get(n, '') if k == DIRECT else ''}"
                                    for (n, b), k in choices.items() if b == batch)
                if batch == 1 and fused:
                    kernels = f"fused chain {', '.join(fused)} (per layer when not fused: {kernels})"
                ratio = paired_ratio([r["dense"] for r in t], [r["sparse"] for r in t])
                model_rows.append({"model": model_name, "density": density, "batch": batch, "ratio": ratio,
                                   "dense": statistics.median(r["dense"] for r in t),
                                   "sparse": statistics.median(r["sparse"] for r in t), "kernels": kernels})
            for c in layer_choices(fast):
                layer_rows.append({"model": model_name, "layer": c.name, "density": density, "batch": c.batch,
                                   **{k: c.timings.get(k, math.nan) for k in (*available_kernels(), DIRECT)},
                                   "chosen": c.kernel})
            dense = build()  # fresh weights for the next density (masks shrink from the dense net)
            bar.update()
    bar.close()
    return model_rows, layer_rows


def target(density: float, batch: int, conv: bool = False) -> float:
    """The speedup each row must reach: batch 1 >= 2x at 10% kept, >= 6x at 2%; otherwise, and for the convolutional
    zoo (`conv`), never slower than dense."""
    return {0.1: 2.0, 0.02: 6.0}.get(density, 1.0) if batch == 1 and not conv else 1.0


def format_inference(model_rows, layer_rows, busy: bool = False, conv: bool = False) -> str:
    import torch

    from ticketlab.bench.noise import verdict
    from ticketlab.core.masks import describe_density

    goals = "never slower than dense" if conv else "batch 1 >= 2x at 10% kept, >= 6x at 2%, never slower than dense"
    lines = [f"sparse inference vs dense, {torch.get_num_threads()} threads, time per batch (median of {REPEATS} "
             "interleaved timings, each the best of many short rounds); speedup = dense / sparse (>1: sparse "
             f"faster), its range and noise (cv of the timings); target: {goals}",
             f"{'model':<10} {'kept':<28} {'batch':>5} {'dense ms':>9} {'sparse ms':>9} {'speedup':>36}  target"]
    for r in model_rows:
        goal = target(r["density"], r["batch"], conv)
        lines.append(f"{r['model']:<10} {describe_density(r['density']):<28} {r['batch']:>5} "
                     f"{1e3 * r['dense']:9.3f} {1e3 * r['sparse']:9.3f} {r['ratio']!s:>36}  "
                     f">= {goal:g}x: {verdict(r['ratio'], goal, busy=busy)}")
        lines.append(f"{'':<10} kernels: {r['kernels']}")
    if layer_rows:
        kernels = ["torch-csr", "numba", "numba-parallel"]
        if any(not math.isnan(r.get("direct", math.nan)) for r in layer_rows):  # a column where convs were timed
            kernels.append("direct")
        heads = {"torch-csr": "torch-csr", "numba": "numba", "numba-parallel": "numba-par", "direct": "direct"}
        lines += ["", "per layer: each kernel's speedup over dense; ours/torch = torch-csr time / best numba time",
                  f"{'layer':<14} {'kept':>6} {'batch':>5} {'dense us':>9} "
                  + "".join(f"{heads[k]:>10}" for k in kernels) + f" {'ours/torch':>10}  chosen"]
        for r in layer_rows:
            ours = min((r[k] for k in ("numba", "numba-parallel") if not math.isnan(r.get(k, math.nan))),
                       default=math.nan)
            lines.append(f"{r['model'] + '.' + r['layer']:<14} {100 * r['density']:5.1f}% {r['batch']:>5} "
                         f"{1e6 * r['dense']:9.1f} "
                         + "".join(f"{_ratio(r['dense'], r.get(k, math.nan)):>10}" for k in kernels)
                         + f" {_ratio(r['torch-csr'], ours):>10}  {r['chosen']}")
    return "\n".join(lines)


def _ratio(a: float, b: float) -> str:
    """'2.41x', or '-' for a kernel that was not measured (numba missing; numba-parallel on one thread)."""
    return "-" if math.isnan(b) else f"{a / b:.2f}x"



def inference_report(quick: bool = False, progress: bool = False, smoke: bool = False) -> str:
    """The section, with the machine load seen while it was measured. smoke: LeNet-300-100 at 2% kept, batch 1."""
    from ticketlab.bench.noise import load_mark, load_since

    before = load_mark()
    if smoke:
        rows = inference_rows({"lenet300": lenet300}, (0.02,), (1,), min_time=0.03, progress=progress)
    elif quick:
        models = {"lenet300": lenet300, "vgg-fc7": lambda: vgg16_fc(("fc7",))}
        rows = inference_rows(models, QUICK_DENSITIES, BATCHES, min_time=0.05, progress=progress)
    else:
        rows = inference_rows({"lenet300": lenet300, "vgg16-fc": vgg16_fc}, DENSITIES, BATCHES, progress=progress)
    load = load_since(before)
    return f"{format_inference(*rows, busy=load.busy)}\n{load}"
