"""A Python worker process for the fleet tests, printing the same JSON lines
as the Rust `fleet_worker` example (`--print-records`): initialize, record,
checkpoint, lease_lost, plus `shutdown_requested` and `exit`.

Settings from the environment: KFLEET_STREAM, KFLEET_APPLICATION,
KFLEET_WORKER_ID, KFLEET_FAILOVER_SECS and the AWS_* variables of
`LocalAws.env()`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from kinesis_fleet import Batch, Checkpointer, InitializeInput, RecordProcessor, Worker

WORKER = os.environ["KFLEET_WORKER_ID"]
#: Processors of different shards run on different threads: one line at a time.
STDOUT = threading.Lock()


def emit(**event: object) -> None:
    line = json.dumps({"worker": WORKER, **event}) + "\n"
    with STDOUT:
        sys.stdout.write(line)
        sys.stdout.flush()


class Printer(RecordProcessor):
    def initialize(self, input: InitializeInput) -> None:
        self.shard = input.shard_id
        emit(event="initialize", shard=input.shard_id, checkpoint=input.checkpoint)

    def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
        for r in batch:
            emit(event="record", shard=batch.shard_id, seq=r.sequence_number,
                 sub=r.sub_sequence_number, key=r.partition_key, data=r.data.decode())
        checkpointer.checkpoint()
        emit(event="checkpoint", shard=batch.shard_id, ok=True)

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        checkpointer.checkpoint()
        emit(event="checkpoint", shard=self.shard, at="SHARD_END", ok=True)

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        checkpointer.checkpoint()
        emit(event="shutdown_requested", shard=self.shard)

    def lease_lost(self) -> None:
        emit(event="lease_lost", shard=self.shard)


def main() -> int:
    # A background job of a shell without job control starts with SIGINT
    # ignored, and Python keeps it ignored: take the tests' Ctrl-C either way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    worker = Worker(
        stream=os.environ["KFLEET_STREAM"],
        application=os.environ["KFLEET_APPLICATION"],
        worker_id=WORKER,
        processor=Printer,
        initial_position="TRIM_HORIZON",
        failover=float(os.environ.get("KFLEET_FAILOVER_SECS", "3")),
        heartbeat_interval=0.5,
        poll_interval=0.1,
        shard_sync_interval=2.0,
    )
    emit(event="started")
    try:
        worker.run()
    except KeyboardInterrupt:
        emit(event="exit", how="KeyboardInterrupt")
        return 130
    emit(event="exit", how="returned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
