"""A no-op amazon_kclpy record processor for `cargo xtask bench multilang`:
`kfleet multilang` runs one per shard; it checkpoints every batch and prints
JSON lines like `fleet_worker --print-batches`.

    executableName = python kclpy_noop.py   (amazon_kclpy on PYTHONPATH)

Its stdout carries the MultiLang protocol, so it prints its JSON lines to the
stdout of the process that started it (`/proc/<parent>/fd/1`, Linux): the
benchmark reads `kfleet multilang`'s stdout as it reads every other
consumer's. Each line is one write, under the pipe's atomic size.
"""

import json
import os

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor

EVENTS = open("/proc/{}/fd/1".format(os.getppid()), "w", buffering=1)


def emit(**fields):
    EVENTS.write(json.dumps(fields) + "\n")


class NoOp(processor.RecordProcessorBase):
    def __init__(self):
        self.shard = ""

    def initialize(self, initialize_input):
        self.shard = initialize_input.shard_id
        emit(event="initialize", shard=self.shard)

    def process_records(self, process_records_input):
        emit(event="batch", shard=self.shard, records=len(process_records_input.records))
        self.checkpoint(process_records_input.checkpointer)

    def lease_lost(self, lease_lost_input):
        emit(event="lease_lost", shard=self.shard)

    def shard_ended(self, shard_ended_input):
        self.checkpoint(shard_ended_input.checkpointer)

    def shutdown_requested(self, shutdown_requested_input):
        self.checkpoint(shutdown_requested_input.checkpointer)

    def checkpoint(self, checkpointer):
        try:
            checkpointer.checkpoint()
        except kcl.CheckpointError as e:
            emit(event="checkpoint_error", shard=self.shard, error=e.value)


if __name__ == "__main__":
    kcl.KCLProcess(NoOp()).run()
