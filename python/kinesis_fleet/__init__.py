"""Consume Amazon Kinesis Data Streams with fleets of workers whose record
processors are Python.

The fleet protocol, the KCL-compatible lease table, checkpoints and
resharding are kinesis-fleet's (Rust); your processor is a
:class:`RecordProcessor` subclass (plain or ``async def`` methods) or a
function called with each :class:`Batch`.
"""

from kinesis_fleet._native import (
    Batch,
    Checkpointer,
    CheckpointError,
    ConfigurationError,
    InitializeInput,
    InvalidSequence,
    KinesisFleetError,
    LeaseLost,
    LeaseTableError,
    LocalAwsError,
    Record,
    RetrievalError,
    StreamNotFound,
    Throttled,
)
from kinesis_fleet.processor import RecordProcessor
from kinesis_fleet.worker import Worker

__all__ = [
    "Batch",
    "CheckpointError",
    "Checkpointer",
    "ConfigurationError",
    "InitializeInput",
    "InvalidSequence",
    "KinesisFleetError",
    "LeaseLost",
    "LeaseTableError",
    "LocalAwsError",
    "Record",
    "RecordProcessor",
    "RetrievalError",
    "StreamNotFound",
    "Throttled",
    "Worker",
]
