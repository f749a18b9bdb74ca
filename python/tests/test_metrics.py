"""`Worker(metrics_addr=...)`: the process's Prometheus exposition."""

from __future__ import annotations

import socket
import urllib.request
from typing import List

import pytest
from conftest import FAST, Running, keyed, wait_until

from kinesis_fleet import Batch, ConfigurationError, Worker
from kinesis_fleet.testing import LocalAws


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processed(url: str) -> float:
    """The sum of `kinesis_fleet_records_processed_total` over its series."""
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("kinesis_fleet_records_processed_total")
    )


def test_metrics_addr_serves_the_workers_metrics(aws: LocalAws) -> None:
    stream = aws.create_stream(shards=1)
    url = f"http://127.0.0.1:{_free_port()}/metrics"
    got: List[bytes] = []

    def handle(batch: Batch) -> None:
        got.extend(r.data for r in batch)

    running = Running(Worker(stream=stream, application=aws.unique_name("metrics"), processor=handle,
                             initial_position="TRIM_HORIZON", metrics_addr=url[7:-8], **FAST,
                             **aws.worker_options()))
    records = keyed("m", 3, 4)
    aws.put(stream, records)
    wait_until(lambda: len(got) >= len(records), 30, lambda: f"{len(got)} of {len(records)}")
    wait_until(lambda: _processed(url) == len(records), 10, lambda: f"{_processed(url)} processed")
    running.stop()


def test_a_malformed_metrics_addr_names_the_field(aws: LocalAws) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Worker(stream="s", application="a", processor=lambda batch: None, metrics_addr="localhost",
               **aws.worker_options())
    assert raised.value.field == "metrics_addr"
