"""Test data: small run directories written by hand exactly as docs/run-directory.md documents them, so the
report can be tested without training. Accuracies and early-stop steps are fixed numbers (below) plus a per-seed
offset, so the expected means and standard deviations are known."""

import json
import math
from pathlib import Path

import torch
from torch import nn

from ticketlab.core.files import save_tensors, write_json_atomic
from ticketlab.core.masks import Masks

KINDS = ("random_pruning", "random_reinit", "oneshot")
# early-stop test accuracy by kind and level (seed s adds 0.01 * s); level 0 exists for IMP only
ACC = {"imp": [0.90, 0.92, 0.91], "random_pruning": [None, 0.88, 0.80],
       "random_reinit": [None, 0.87, 0.78], "oneshot": [None, 0.90, 0.85]}
STOP = {"imp": [80, 60, 50], "random_pruning": [None, 90, 100], "random_reinit": [None, 90, 100],
        "oneshot": [None, 70, 70]}  # early-stop step; seed s adds 10 * s
STEPS, EVAL_EVERY = 100, 10
HIDDEN_RATE, OUTPUT_RATE = 0.5, 0.2  # fraction of the remaining weights removed per level


def fake_model(seed: int) -> nn.Sequential:
    """A real MLP with prunable weights '0.weight', '2.weight', '4.weight' (the last is the output layer)."""
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


def magnitude_masks(model: nn.Module, level: int) -> Masks:
    out = {}
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            rate = OUTPUT_RATE if name == "4.weight" else HIDDEN_RATE
            keep = max(1, round(p.numel() * (1 - rate) ** level))
            top = p.detach().abs().flatten().topk(keep).indices
            out[name] = torch.zeros(p.numel(), dtype=torch.bool).index_fill_(0, top, True).reshape(p.shape)
    return Masks(out)


def random_masks_like(masks: Masks, seed: int) -> Masks:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in masks.items():
        keep = int(m.sum())
        order = torch.randperm(m.numel(), generator=gen)[:keep]
        out[name] = torch.zeros(m.numel(), dtype=torch.bool).index_fill_(0, order, True).reshape(m.shape)
    return Masks(out)


def config(seed: int, levels: int, baselines, **lottery) -> dict:
    cfg = {
        "model": {"name": "mlp-fake"}, "data": {"name": "fake", "root": None, "batch_size": 4},
        "train": {"steps": f"{STEPS}it", "optimizer": "adam", "lr": 1e-3},
        "prune": {"criterion": "magnitude", "scope": "layer", "rate": HIDDEN_RATE, "rates": {"4.weight": OUTPUT_RATE}},
        "lottery": {"levels": levels, "rewind": "init", "target_density": None, "max_drop": None,
                    "baselines": list(baselines), **lottery},
        "seeds": {"init": seed, "data": seed, "prune": seed},
    }
    non_default = {"lottery": {"levels": levels, **lottery}, "seeds": cfg["seeds"]}
    return {"hash": f"fake{seed:06d}", "config": cfg, "preset": None, "non_default": non_default}


def write_metrics(path: Path, final_acc: float) -> None:
    lines = []
    for step in range(0, STEPS + 1, EVAL_EVERY):
        acc = 0.1 + (final_acc - 0.1) * (1 - math.exp(-step / 20))
        lines.append({"step": step, "epoch": step / 50, "train_loss": None if step == 0 else 1 - acc,
                      "val_loss": 1 - acc, "val_acc": acc, "test_loss": 1 - acc, "test_acc": acc, "lr": 1e-3,
                      "wall": step * 0.01})
    path.write_text("".join(json.dumps(m) + "\n" for m in lines))


def write_stage(path: Path, kind: str, level: int, seed: int, masks: Masks, weights: dict) -> None:
    path.mkdir(parents=True)
    masks.save(path / "masks.safetensors")
    save_tensors(path / "final.safetensors", {n: w * masks[n] if n in masks else w for n, w in weights.items()})
    acc, stop = ACC[kind][level] + 0.01 * seed, STOP[kind][level] + 10 * seed
    write_metrics(path / "metrics.jsonl", acc)
    kept, numels = sum(masks.kept().values()), sum(masks.numels().values())
    params_total = sum(w.numel() for w in weights.values())
    write_json_atomic(path / "summary.json", {
        "level": level, "kind": kind, "status": "done", "density": masks.density(), "sparsity": masks.sparsity(),
        "kept": kept, "prunable": numels, "params_total": params_total, "params_kept": params_total - (numels - kept),
        "macs_dense": numels, "macs_kept": kept, "steps": STEPS, "early_stop_step": stop,
        "early_stop_val_loss": 1 - acc, "early_stop_test_acc": acc, "final_test_acc": acc - 0.002,
        "best_test_acc": acc + 0.001, "best_val_acc": acc, "final_val_acc": acc,
        "layer_density": masks.densities(), "wall": 1.0,
    })


def write_fake_run(root: Path, seed: int = 0, levels: int = 2, baselines=KINDS, name: str | None = None,
                   **lottery) -> Path:
    """A finished run directory with IMP levels 0..levels and the given baselines at levels >= 1."""
    model = fake_model(seed)
    init = {n: t.detach().clone() for n, t in model.state_dict().items()}
    run = Path(root) / (name or f"mlp-fake-seed{seed}")
    run.mkdir(parents=True)
    write_json_atomic(run / "config.json", config(seed, levels, baselines, **lottery))
    save_tensors(run / "init.safetensors", init)
    save_tensors(run / "rewind.safetensors", init)
    trained = {n: t * 1.5 for n, t in init.items()}  # stand-in for training: any real tensors will do
    for level in range(levels + 1):
        masks = magnitude_masks(model, level)
        level_dir = run / f"level_{level:02d}"
        write_stage(level_dir, "imp", level, seed, masks, trained)
        for kind in baselines if level >= 1 else ():
            kind_masks = random_masks_like(masks, seed + 100 * level) if kind == "random_pruning" else masks
            write_stage(level_dir / "baselines" / kind, kind, level, seed, kind_masks, trained)
    return run
