"""The theory lab: the talk's theoretical claims as seeded, batched experiments on synthetic data.

Part 1 (Zhang et al., NeurIPS 2021), pruned one-hidden-layer ReLU teacher-student:
  phase, phase-d, convergence, error, hessian, imp, concentration, init-samples
Part 2 (Zhang et al., ICLR 2023), class-relevant vs class-irrelevant features, two-layer net and GNN:
  norms, norm-gap, persistence, neuron-pruning, neuron-samples

`run_experiment(name, out)` writes CSV/JSON/PNG into the run directory `out` and returns the summary; see
docs/theory.md for the protocol and the measured numbers.
"""

import dataclasses
import platform
import time

import torch

from ticketlab.paper.theory import (  # noqa: F401  (importing registers the experiments)
    concentration,
    convergence,
    error,
    hessian,
    imp,
    init_samples,
    neuron_pruning,
    neuron_samples,
    norm_gap,
    norms,
    persistence,
    phase,
    phase_d,
)
from ticketlab.paper.theory.checks import DEFAULT_MAX_BYTES
from ticketlab.paper.theory.config import apply_overrides, describe
from ticketlab.paper.theory.registry import EXPERIMENTS, Experiment
from ticketlab.paper.theory.rundir import RunDir

__all__ = ["EXPERIMENTS", "Experiment", "run_experiment", "settings_for"]


def settings_for(name: str, quick: bool = False, overrides=()):
    exp = EXPERIMENTS.get(name)
    settings = exp.settings()
    if quick:
        settings = dataclasses.replace(settings, **exp.quick)
    return apply_overrides(settings, list(overrides))


def run_experiment(name: str, out, quick: bool = False, seed: int = 0, overrides=(),
                   max_bytes: int = DEFAULT_MAX_BYTES, progress=print) -> dict:
    exp = EXPERIMENTS.get(name)
    settings = settings_for(name, quick, overrides)
    rundir = RunDir(out)
    start = time.perf_counter()
    summary = exp.run(settings, seed, rundir, max_bytes, progress)
    if not summary.get("verdicts"):
        raise RuntimeError(f"theory experiment {name!r} returned no verdicts")  # a bug in the experiment, not input
    results = {"experiment": name, "claim": exp.claim, "seed": seed, "size": "quick" if quick else "default",
               "settings": describe(settings), "overrides": list(overrides),
               "elapsed_seconds": round(time.perf_counter() - start, 2),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
               **summary}
    results["files"] = sorted(set(rundir.files) | {"results.json"})
    rundir.json("results.json", results)
    return results
