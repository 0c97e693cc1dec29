"""Sweeps: a grid of ordinary runs under one sweep directory, run by a local process pool or a Ray cluster, resumable
and fault tolerant (docs/sweeps.md)."""

from .driver import run_sweep
from .index import Index
from .spec import RayOptions, RunPlan, SweepSpec, load_spec, parse_spec

__all__ = ["Index", "RayOptions", "RunPlan", "SweepSpec", "load_spec", "parse_spec", "run_sweep"]
