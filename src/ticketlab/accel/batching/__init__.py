"""Ticket batching: train K masked copies of one architecture as one batched model (see trainer.py; its resumable
group checkpoints: checkpoints.py)."""

from ticketlab.accel.batching.stacked import StackedModel, Unsupported, batchable
from ticketlab.accel.batching.trainer import Ticket, train_batched

__all__ = ["StackedModel", "Ticket", "Unsupported", "batchable", "train_batched"]
