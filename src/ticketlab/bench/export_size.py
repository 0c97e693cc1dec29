"""Compact checkpoint sizes against the dense checkpoint and the floor."""

import tempfile
from pathlib import Path

from ticketlab.bench.workloads import DENSITIES, QUICK_DENSITIES, layerwise_masks, lenet300


def export_rows(models: dict, densities=DENSITIES, formats=("auto", "bitmask", "csr")) -> list[dict]:
    from ticketlab.deploy.export import export_compact

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
    from ticketlab.core.masks import describe_density

    lines = ["compact checkpoint size: vs dense = bytes / dense safetensors; vs floor = bytes / (kept x 4 B + "
             "1 bit per pruned-tensor weight + dense tensors); target <= 1.15x the floor",
             f"{'model':<10} {'kept':<28} {'format':<8} {'bytes':>11} {'vs dense':>9} {'vs floor':>9}"]
    for r in rows:
        lines.append(f"{r['model']:<10} {describe_density(r['density']):<28} {r['format']:<8} {r['bytes']:>11,} "
                     f"{r['vs_dense']:8.3f}x {r['vs_floor']:8.3f}x")
    return "\n".join(lines)


def export_report(quick: bool = False, smoke: bool = False) -> str:
    """The section. Sizes are exact (no timing, no noise). smoke: LeNet-300-100 at 2% kept only."""
    from ticketlab.models import build_model

    models = {"lenet300": lenet300}
    if not (quick or smoke):
        models["conv4"] = lambda: build_model("conv4", seed=0)
    densities = (0.02,) if smoke else QUICK_DENSITIES if quick else DENSITIES
    return format_export(export_rows(models, densities)) + "\nsizes are exact byte counts: no noise, no load effect"
