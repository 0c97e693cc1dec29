"""Sweeps: a grid of ordinary runs under one sweep directory, run by a local process pool or a Ray cluster, resumable
and fault tolerant (docs/sweeps.md)."""

from ticketlab.sweep.driver import run_sweep
from ticketlab.sweep.index import Index
from ticketlab.sweep.spec import RayOptions, RunPlan, SweepSpec, load_spec, parse_spec

__all__ = ["Index", "RayOptions", "RunPlan", "SweepSpec", "load_spec", "parse_spec", "run_sweep"]
