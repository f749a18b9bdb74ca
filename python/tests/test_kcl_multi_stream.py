"""A KCL multi-stream application's lease table, handed over and back: our
worker starts the table, kcl-rs (a port of the Java KCL, from PyPI) takes it
over in multi-stream mode, and our worker takes it back, each resuming after
the other's checkpoints."""

from __future__ import annotations

import threading
from collections import Counter
from typing import List, Tuple

import pytest
from conftest import FAST, Running, check_order, wait_until
import kcl_rs

from kinesis_fleet import Batch, Worker
from kinesis_fleet.testing import LocalAws


def test_a_kcl_multi_stream_table_is_taken_over_and_back(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> None:
    streams = [aws.create_stream(shards=1), aws.create_stream(shards=2)]
    application = aws.unique_name("kcl-multi")
    seen: List[Tuple[str, bytes]] = []
    lock = threading.Lock()

    def put(first: int, last: int) -> None:
        for s in streams:
            aws.put(s, [(f"k{n % 4}", f"{s}-k{n % 4}:{n}".encode()) for n in range(first, last)])

    def by(who: str) -> List[bytes]:
        with lock:
            return [data for w, data in seen if w == who]

    def ours() -> Running:
        def handle(batch: Batch) -> None:
            with lock:
                seen.extend(("ours", r.data) for r in batch)

        return Running(Worker(streams=streams, application=application, processor=handle,
                              initial_position="TRIM_HORIZON", **FAST, **aws.worker_options()))

    class Kcl(kcl_rs.RecordProcessorBase):
        def initialize(self, initialize_input: kcl_rs.InitializeInput) -> None:
            pass

        def process_records(self, process_records_input: kcl_rs.ProcessRecordsInput) -> None:
            with lock:
                seen.extend(("kcl", r.data) for r in process_records_input.records)
            process_records_input.checkpointer.checkpoint()

        def lease_lost(self, lease_lost_input: kcl_rs.LeaseLostInput) -> None:
            pass

        def shard_ended(self, shard_ended_input: kcl_rs.ShardEndedInput) -> None:
            shard_ended_input.checkpointer.checkpoint()

        def shutdown_requested(self, shutdown_requested_input: kcl_rs.ShutdownRequestedInput) -> None:
            shutdown_requested_input.checkpointer.checkpoint()

    put(0, 20)
    first = ours()
    wait_until(lambda: len(by("ours")) == 40, 60, lambda: repr(by("ours")))
    first.stop()

    # kcl-rs names its streams as a KCL multi-stream application does.
    put(20, 30)
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    kcl = kcl_rs.Scheduler(stream_identifiers=[aws.stream_identifier(s) for s in streams],
                    application_name=application, record_processor_factory=Kcl, worker_identifier="kcl",
                    initial_position="TRIM_HORIZON", retrieval_mode="POLLING",
                    shard_sync_interval_millis=1000, idle_time_between_reads_millis=200)
    kcl.start()
    try:
        wait_until(lambda: len(by("kcl")) >= 20, 90, lambda: repr(by("kcl")))
    finally:
        kcl.shutdown()
    assert sorted(by("kcl")) == sorted(f"{s}-k{n % 4}:{n}".encode() for s in streams for n in range(20, 30)), \
        "kcl-rs resumed after our checkpoints"

    put(30, 40)
    again = ours()
    wait_until(lambda: len(by("ours")) >= 60, 60, lambda: repr(by("ours")))
    again.stop()
    assert sorted(by("ours")[40:]) == sorted(f"{s}-k{n % 4}:{n}".encode() for s in streams for n in range(30, 40)), \
        "we resumed after kcl-rs's checkpoints"

    with lock:
        delivered = [data for _, data in seen]
    assert [d for d, n in Counter(delivered).items() if n > 1] == [], "delivered twice"
    assert len(delivered) == 80
    assert check_order(delivered) == []
