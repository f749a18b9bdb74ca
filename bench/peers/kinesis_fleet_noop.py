"""A kinesis_fleet (Python) worker for `cargo xtask bench`: a no-op processor
that checkpoints every batch and prints JSON lines like `fleet_worker
--print-batches`.

    python kinesis_fleet_noop.py --stream S --application A --worker-id W

Endpoints, region and credentials come from the standard AWS environment.
Reads with polling from TRIM_HORIZON, default settings; SIGTERM stops it
gracefully.
"""

import argparse
import json
import sys
import threading

from kinesis_fleet import RecordProcessor, Worker

STDOUT = threading.Lock()


def emit(**fields):
    line = json.dumps(fields) + "\n"
    with STDOUT:
        sys.stdout.write(line)
        sys.stdout.flush()


def processor_class(worker):
    class NoOp(RecordProcessor):
        def initialize(self, input):
            self.shard = input.shard_id
            emit(event="initialize", worker=worker, shard=self.shard)

        def process_records(self, batch, checkpointer):
            emit(event="batch", worker=worker, shard=self.shard, records=len(batch))
            checkpointer.checkpoint()

        def shutdown_requested(self, checkpointer):
            checkpointer.checkpoint()

        def lease_lost(self):
            emit(event="lease_lost", worker=worker, shard=self.shard)

    return NoOp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", required=True)
    parser.add_argument("--application", required=True)
    parser.add_argument("--worker-id", required=True)
    args = parser.parse_args()
    Worker(
        stream=args.stream,
        application=args.application,
        worker_id=args.worker_id,
        processor=processor_class(args.worker_id),
        initial_position="TRIM_HORIZON",
    ).run()


if __name__ == "__main__":
    main()
