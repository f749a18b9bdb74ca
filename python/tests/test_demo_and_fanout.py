"""`python -m kinesis_fleet demo` and enhanced fan-out retrieval."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import List

from conftest import FAST, Running, check_order, keyed, wait_until

from kinesis_fleet import Batch, Worker
from kinesis_fleet.testing import LocalAws


def test_demo_prints_the_kfleet_demo_summary() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kinesis_fleet", "demo", "--shards", "2", "--records", "3000", "--keys", "50"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"demo: produced=3000 delivered=3000 lost=0 duplicates=0\n", done.stdout), done.stdout


def test_fanout_retrieval(aws: LocalAws) -> None:
    stream = aws.create_stream(shards=2)
    got: List[bytes] = []
    records = keyed("e", 10, 10)

    def handle(batch: Batch) -> None:
        got.extend(r.data for r in batch)

    running = Running(Worker(stream=stream, application=aws.unique_name("efo"), processor=handle,
                             retrieval="fanout", initial_position="TRIM_HORIZON",
                             failover=FAST["failover"], heartbeat_interval=FAST["heartbeat_interval"],
                             **aws.worker_options()))
    aws.put(stream, records, aggregated=True)
    wait_until(lambda: len(got) >= len(records), 30, lambda: f"{len(got)} of {len(records)}")
    running.stop()
    assert sorted(got) == sorted(d for _, d in records)
    assert check_order(got) == []
