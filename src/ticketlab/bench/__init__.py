"""The measurements behind `ticketlab bench` and benchmarks/, one section per file: inference.py (sparse vs dense
inference), export_size.py (compact checkpoint sizes), batching.py (K tickets batched vs sequential),
training.py (masked vs dense training vs torch.nn.utils.prune); workloads.py holds the models and masks they use,
noise.py the statistics all of them print (medians, ranges, noise, machine load, verdicts)."""

from ticketlab.bench.batching import (
    batching_report,
    batching_times,
    format_batching,
    sgemm_gflops,
    train_flops_per_step,
)
from ticketlab.bench.export_size import export_report, export_rows, format_export
from ticketlab.bench.inference import format_inference, inference_report, inference_rows
from ticketlab.bench.noise import Load, Ratio, load_mark, load_since, loadavg, paired_ratio, spread, verdict
from ticketlab.bench.training import format_masked_training, masked_training_times, training_report

__all__ = [
    "Load", "Ratio", "load_mark", "load_since", "loadavg", "paired_ratio", "spread", "verdict",
    "batching_report", "batching_times", "export_report", "export_rows", "format_batching", "format_export",
    "format_inference", "format_masked_training", "inference_report", "inference_rows", "masked_training_times",
    "sgemm_gflops", "train_flops_per_step", "training_report",
]
