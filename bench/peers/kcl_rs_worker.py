"""A kcl-rs worker for `cargo xtask bench`: a no-op processor that checkpoints
every batch and prints JSON lines like `fleet_worker --print-batches`.

    python kcl_rs_worker.py --stream S --application A --worker-id W

Endpoints, region and credentials come from the standard AWS environment
(`AWS_ENDPOINT_URL_KINESIS`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_REGION`, ...).
Reads with polling (GetRecords) from TRIM_HORIZON; SIGTERM stops it gracefully.
"""

import argparse
import json
import signal
import sys
import threading

from kcl_rs import CheckpointError, RecordProcessorBase, Scheduler


def emit(**fields):
    print(json.dumps(fields), flush=True)


def processor_class(worker):
    class NoOp(RecordProcessorBase):
        shard = ""

        def initialize(self, initialize_input):
            self.shard = initialize_input.shard_id or ""
            emit(event="initialize", worker=worker, shard=self.shard)

        def process_records(self, process_records_input):
            emit(event="batch", worker=worker, shard=self.shard,
                 records=len(process_records_input.records))
            self.checkpoint(process_records_input.checkpointer)

        def lease_lost(self, lease_lost_input):
            emit(event="lease_lost", worker=worker, shard=self.shard)

        def shard_ended(self, shard_ended_input):
            self.checkpoint(shard_ended_input.checkpointer)

        def shutdown_requested(self, shutdown_requested_input):
            self.checkpoint(shutdown_requested_input.checkpointer)

        def checkpoint(self, checkpointer):
            try:
                checkpointer.checkpoint()
            except CheckpointError as e:
                emit(event="checkpoint_error", worker=worker, shard=self.shard, error=e.value)

    return NoOp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", required=True)
    parser.add_argument("--application", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--shard-sync-millis", type=int, default=None,
                        help="shard_sync_interval_millis (kcl-rs default: 60000)")
    parser.add_argument("--idle-millis", type=int, default=None,
                        help="idle_time_between_reads_millis (kcl-rs default: 1500)")
    args = parser.parse_args()
    scheduler = Scheduler(
        stream_name=args.stream,
        application_name=args.application,
        record_processor_factory=processor_class(args.worker_id),
        worker_identifier=args.worker_id,
        initial_position="TRIM_HORIZON",
        retrieval_mode="POLLING",
        shard_sync_interval_millis=args.shard_sync_millis,
        idle_time_between_reads_millis=args.idle_millis,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    scheduler.start()
    stop.wait()
    scheduler.shutdown()


if __name__ == "__main__":
    sys.exit(main())
