"""Masked training against dense training and against torch.nn.utils.prune."""

import tempfile
from pathlib import Path

from ticketlab.bench.workloads import BATCH, timed

TRAINING_VARIANTS = ("dense", "masked", "torch-prune")


def masked_training_times(steps: int = 600, repeats: int = 5) -> dict:
    """{variant: [(steps per wall second, per CPU second)] * repeats}: LeNet-300-100 trained by `train` without masks
    ("dense"), under a 20%-kept mask ("masked"), and with the same mask attached by `torch.nn.utils.prune` instead
    ("torch-prune": weight = weight_orig * weight_mask recomputed in every forward pass), alternating; each with the
    accelerator `ticketlab run` uses (ticketlab.accel.select: the masked Adam kernel where it is built)."""
    from ticketlab.accel import select
    from ticketlab.core.masks import Masks
    from ticketlab.core.pruning import PruneSpec, prune
    from ticketlab.core.torch_prune import to_torch_prune
    from ticketlab.data import load_dataset
    from ticketlab.engine.config import TrainConfig
    from ticketlab.engine.schedule import make_plan
    from ticketlab.engine.training import train
    from ticketlab.models import build_model

    splits = load_dataset("mnist-mini")

    def rate(name: str, steps: int = steps) -> tuple[float, float]:
        cfg = TrainConfig(steps=f"{steps}it", eval_every=f"{steps}it", checkpoint_every=f"{10 * steps}it")
        model = build_model("lenet300", num_classes=10, seed=0)
        masks = Masks({}) if name == "dense" else prune(model, Masks.ones(model), PruneSpec(rate=0.8))
        if name == "torch-prune":  # the mask lives in the model: `train` sees plain parameters
            model, masks = to_torch_prune(model, masks), Masks({})
        plan = make_plan(cfg, len(splits.train), BATCH, data_seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = timed(lambda: train(model, masks, splits, cfg, plan, Path(tmp), accelerator=select()))
        return plan.total / wall, plan.total / cpu

    for name in TRAINING_VARIANTS:  # warm-up: first calls load compiled kernels
        rate(name, steps=10)
    times = {name: [] for name in TRAINING_VARIANTS}
    for _ in range(repeats):
        for name in TRAINING_VARIANTS:
            times[name].append(rate(name))
    return times


def format_masked_training(times: dict, steps: int, busy: bool = False) -> str:
    """Medians, ranges and noise of the alternating repeats; the verdict on the 5% target only when the noise
    allows it."""
    import torch

    from ticketlab.bench.noise import paired_ratio, spread, verdict

    def overhead(name: str, per: int = 0):  # per 0: wall time, 1: CPU time; time ratio = dense rate / other rate
        return paired_ratio([d[per] for d in times["dense"]], [m[per] for m in times[name]])

    lines = [f"masked training: LeNet-300-100, batch {BATCH}, {steps} steps x {len(times['dense'])} repeats "
             f"alternating, {torch.get_num_threads()} threads; target: masked overhead <= 5% (time ratio <= 1.05x)"]
    for name in TRAINING_VARIANTS:
        lines.append(f"{name:<12} {spread([r for r, _ in times[name]], unit='steps/s')}")
    for name in TRAINING_VARIANTS[1:]:
        lines.append(f"{name} time / dense time: {overhead(name)}" +
                     (f"; per CPU second {overhead(name, 1)}" if torch.get_num_threads() == 1 else ""))
    lines.append(f"target masked overhead <= 5%: {verdict(overhead('masked'), 1.05, False, busy)}")
    lines.append(f"masked / torch-prune throughput: "
                 f"{paired_ratio([m for m, _ in times['masked']], [t for t, _ in times['torch-prune']])}")
    return "\n".join(lines)


def training_report(quick: bool = False, smoke: bool = False) -> str:
    """The section, with the machine load seen while it was measured. smoke: 10 steps, 2 repeats."""
    from ticketlab.bench.noise import load_mark, load_since

    steps, repeats = (10, 2) if smoke else (300, 3) if quick else (600, 5)
    before = load_mark()
    times = masked_training_times(steps, repeats)
    load = load_since(before)
    return f"{format_masked_training(times, steps, load.busy)}\n{load}"
