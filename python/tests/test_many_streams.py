"""One worker over several streams: every record once, to a processor told
its stream; a stream added and one removed while the worker runs."""

from __future__ import annotations

import threading
from collections import Counter
from typing import List, Tuple

import pytest
from conftest import FAST, Running, wait_until

from kinesis_fleet import Batch, Checkpointer, ConfigurationError, InitializeInput, RecordProcessor, Worker
from kinesis_fleet.testing import LocalAws


def test_one_worker_reads_several_streams_and_follows_changes_to_the_set(aws: LocalAws) -> None:
    first, second, later = aws.create_stream(shards=1), aws.create_stream(shards=2), aws.create_stream(shards=1)
    seen: List[Tuple[str, bytes]] = []
    lock = threading.Lock()

    class Tagging(RecordProcessor):
        def initialize(self, input: InitializeInput) -> None:
            self.stream = input.stream_name

        def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
            with lock:
                seen.extend((self.stream, r.data) for r in batch)
            checkpointer.checkpoint()

    def put(stream: str, first_n: int, count: int) -> None:
        aws.put(stream, [(f"k{n % 4}", f"{stream}|{n}".encode()) for n in range(first_n, first_n + count)])

    def distinct() -> Counter:
        with lock:
            return Counter(data for _, data in seen)

    put(first, 0, 20)
    put(second, 0, 20)
    worker = Worker(streams=[first, second], application=aws.unique_name("many"), processor=Tagging,
                    initial_position="TRIM_HORIZON", removed_stream_lease_deletion_delay=1.0,
                    **FAST, **aws.worker_options())
    assert worker.streams == [first, second]
    running = Running(worker)
    wait_until(lambda: len(distinct()) == 40, 60, lambda: repr(sorted(distinct())))

    put(later, 0, 10)
    assert worker.add_stream(later)
    assert not worker.add_stream(later), "already in the set"
    wait_until(lambda: len(distinct()) == 50, 60, lambda: repr(sorted(distinct())))
    assert worker.remove_stream(first)
    assert not worker.remove_stream(first), "no longer in the set"
    assert worker.streams == [second, later]
    put(second, 20, 10)
    wait_until(lambda: len(distinct()) == 60, 60, lambda: repr(sorted(distinct())))
    running.stop()

    with lock:
        wrong = [(stream, data) for stream, data in seen if not data.startswith(f"{stream}|".encode())]
    assert wrong == [], "records given to a processor told another stream"
    assert [data for data, n in distinct().items() if n > 1] == [], "delivered twice"


def test_stream_settings_are_checked(aws: LocalAws) -> None:
    options = dict(application="app", processor=lambda batch: None, **aws.worker_options())
    with pytest.raises(ConfigurationError) as bad_arn:
        Worker(streams=["arn:aws:kinesis:eu-west-1:12345:stream/orders"], **options)
    assert bad_arn.value.field == "streams" and "account" in str(bad_arn.value)
    with pytest.raises(ConfigurationError) as both:
        Worker(stream="a", streams=["b"], **options)
    assert both.value.field == "stream"
    with pytest.raises(ConfigurationError):
        Worker(**options)
    single = Worker(stream="a", **options)
    with pytest.raises(RuntimeError, match="streams="):
        single.add_stream("b")
