"""A worker process to run several of: every copy with the same application
name joins one fleet.

    python orders_worker.py orders orders-etl

AWS settings come from the standard chain (profile, AWS_REGION,
AWS_ENDPOINT_URL_KINESIS, ...). SIGTERM or Ctrl-C stops it gracefully: the
processors checkpoint and the leases move to the other workers at once.
"""

from __future__ import annotations

import json
import sys

from kinesis_fleet import Batch, Checkpointer, InitializeInput, RecordProcessor, Worker


class Orders(RecordProcessor):
    def initialize(self, input: InitializeInput) -> None:
        self.shard_id = input.shard_id
        self.total = 0.0

    def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
        for record in batch:
            order = json.loads(record.data)
            self.total += float(order.get("amount", 0))
        checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        checkpointer.checkpoint()


def main(stream: str, application: str) -> None:
    worker = Worker(
        stream=stream,
        application=application,
        processor=Orders,
        initial_position="TRIM_HORIZON",
    )
    worker.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
