"""Testing your own processor against local emulators with pytest: no AWS
account, nothing to install besides kinesis_fleet."""

from __future__ import annotations

import threading
import time
from typing import Iterator, List

import pytest

from kinesis_fleet import Batch, Worker
from kinesis_fleet.testing import LocalAws


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with LocalAws() as local:
        yield local


def test_every_order_arrives(aws: LocalAws) -> None:
    stream = aws.create_stream(shards=2)
    aws.put(stream, [(f"customer-{i % 5}", f"order-{i}".encode()) for i in range(50)])
    seen: List[bytes] = []

    def handle(batch: Batch) -> None:
        seen.extend(record.data for record in batch)

    worker = Worker(
        stream=stream,
        application=aws.unique_name("orders-test"),
        processor=handle,
        initial_position="TRIM_HORIZON",
        poll_interval=0.1,
        **aws.worker_options(),
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 30
    while len(seen) < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.shutdown()
    thread.join()
    assert sorted(seen) == sorted(f"order-{i}".encode() for i in range(50))
