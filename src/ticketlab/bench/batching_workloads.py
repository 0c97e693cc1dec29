"""The ticket-batching benchmark's workloads: a model of the zoo, its paper's recipe (batch, optimizer), its data, and
K tickets with their own initialisation, data order and magnitude masks at densities its IMP run reaches."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BatchingWorkload:
    model: str  # a name in the model zoo
    label: str
    batch: int
    train: dict  # TrainConfig settings but steps and evaluation
    spec: Callable[[int, int | None], dict]  # (ticket i, IMP level or None: the default) -> its PruneSpec settings
    kept: Callable[[int | None], str]  # what the tickets keep, for the header
    data: str = "cifar-shaped"  # "mnist-mini": the bundled MNIST subset; "cifar-shaped": seeded random 3x32x32


def imp_level(level: int, rate: float, rates: dict | None = None, **settings) -> dict:
    """One-shot magnitude pruning to the densities IMP reaches at `level` with these per-level rates."""
    return {"rate": 1 - (1 - rate) ** level, "rates": {p: 1 - (1 - r) ** level for p, r in (rates or {}).items()},
            **settings}


def lenet_spec(i: int, level: int | None) -> dict:
    """Every layer keeps 20%, 16%, 12.8%, 10.2%, 20%, ... (or all IMP's density at `level`, 20% per level)."""
    return {"rate": 1 - 0.2 * 0.8 ** (i % 4)} if level is None else imp_level(level, 0.2)


CONV6_RATES = {"conv*": 0.15, "fc3.weight": 0.1}  # Frankle & Carbin: conv 15%, fc 20%, output 10% per level
CONV6_LEVEL = 10  # ~10% of all weights kept (its convolutions 19.7%), where Conv-6 tickets beat the dense network
RESNET20_LEVEL = 8  # 16.8% kept: the sparsest ResNet-20 ticket that matched the dense network (Frankle et al. 2020)

def conv6_kept(level: int) -> str:
    return f"IMP level {level}: convolutions keep {100 * 0.85 ** level:.1f}%, fc1-fc2 {100 * 0.8 ** level:.1f}%"


WORKLOADS = {
    # Frankle & Carbin 2019: batch 60, Adam 1.2e-3
    "lenet300": BatchingWorkload(
        "lenet300", "LeNet-300-100", 60, {"optimizer": "adam", "lr": 1.2e-3}, lenet_spec,
        lambda level: ("every layer keeps 20%, 16%, 12.8%, 10.2% (two tickets each)" if level is None else
                       f"IMP level {level}: every layer keeps {100 * 0.8 ** level:.1f}%"), data="mnist-mini"),
    # Conv-6: batch 60, Adam 3e-4; all tickets at one IMP level, as the seeds and baselines of a level batch
    "conv6": BatchingWorkload(
        "conv6", "Conv-6", 60, {"optimizer": "adam", "lr": 3e-4},
        lambda i, level: imp_level(level or CONV6_LEVEL, 0.2, CONV6_RATES),
        lambda level: conv6_kept(level or CONV6_LEVEL)),
    # ResNet-20 (Frankle et al. 2020): batch 128, SGD 0.1 momentum 0.9, wd 1e-4, 20% global per level
    "resnet20": BatchingWorkload(
        "resnet20", "ResNet-20", 128, {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
        lambda i, level: imp_level(level or RESNET20_LEVEL, 0.2, scope="global"),
        lambda level: f"IMP level {level or RESNET20_LEVEL}: {100 * 0.8 ** (level or RESNET20_LEVEL):.1f}% of the "
                      f"weights kept (global)"),
}


def batching_data(workload: BatchingWorkload, train_size: int):
    """Its splits: the bundled MNIST subset, or seeded random CIFAR-shaped images (speed does not depend on pixels;
    small validation and test splits: the benchmark evaluates at the start and the end only)."""
    import torch

    from ticketlab.data import InMemory, Splits, load_dataset

    if workload.data == "mnist-mini":
        return load_dataset("mnist-mini")
    g = torch.Generator().manual_seed(0)
    parts = [InMemory(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
             for n in (train_size, 120, 120)]
    return Splits(*parts, num_classes=10, input_shape=(3, 32, 32), name="cifar-shaped")


def pruned_copies(workload: BatchingWorkload, k: int, level: int | None = None) -> list:
    """(model, masks) of k tickets of `workload`: their own init (seed i) and magnitude masks (at IMP `level`, or the
    workload's default)."""
    from ticketlab.core.masks import Masks
    from ticketlab.core.pruning import PruneSpec, prune
    from ticketlab.models import build_model

    models = [build_model(workload.model, num_classes=10, seed=i) for i in range(k)]
    return [(m, prune(m, Masks.ones(m), PruneSpec(**workload.spec(i, level)))) for i, m in enumerate(models)]


def batching_tickets(workload: BatchingWorkload, k: int, splits, cfg, root: Path, level: int | None = None) -> list:
    """The k tickets of `pruned_copies`, each with its own data order (data seed i) and stage directory."""
    from ticketlab.accel.batching import Ticket
    from ticketlab.engine.schedule import make_plan

    return [Ticket(model, masks, splits, make_plan(cfg, len(splits.train), workload.batch, data_seed=i),
                   root / f"ticket{i}") for i, (model, masks) in enumerate(pruned_copies(workload, k, level))]
