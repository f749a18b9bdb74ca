"""Processor exceptions under each error policy, and a split and a merge
under a steady producer."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Dict, List

from conftest import FAST, Running, check_order, keyed, wait_until

from kinesis_fleet import Batch, Checkpointer, InitializeInput, RecordProcessor, Worker
from kinesis_fleet.testing import LocalAws


class Failing(RecordProcessor):
    """Raises on the first delivery of the batch holding `x0:1`; logs every call."""

    calls: List[str]
    failed: List[bool]

    def initialize(self, input: InitializeInput) -> None:
        self.calls.append("initialize")

    def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
        data = [r.data.decode() for r in batch]
        if "x0:1" in data and not self.failed:
            self.failed.append(True)
            raise ValueError("processor failure")
        self.calls.extend(data)
        checkpointer.checkpoint()


def run_policy(aws: LocalAws, policy: str) -> tuple:
    stream = aws.create_stream(shards=1)
    calls: List[str] = []
    failed: List[bool] = []

    class Processor(Failing):
        pass

    Processor.calls, Processor.failed = calls, failed
    aws.put(stream, [("x0", b"x0:0")])
    worker = Worker(stream=stream, application=aws.unique_name(policy), processor=Processor,
                    initial_position="TRIM_HORIZON", error_policy=policy, retry_backoff=(0.05, 0.2),
                    **FAST, **aws.worker_options())
    running = Running(worker)
    wait_until(lambda: "x0:0" in calls, 30, lambda: repr(calls))
    aws.put(stream, [("x0", b"x0:1")])
    wait_until(lambda: bool(failed), 30, lambda: repr(calls))
    aws.put(stream, [("x0", b"x0:2")])
    wait_until(lambda: "x0:2" in calls, 30, lambda: repr(calls))
    running.stop()
    return calls, worker.stats()


def test_retry_policy_redelivers_the_failed_batch(aws: LocalAws) -> None:
    calls, stats = run_policy(aws, "retry")
    assert calls == ["initialize", "x0:0", "x0:1", "x0:2"]
    assert stats["processor_errors"] == 1 and stats["batches_skipped"] == 0


def test_skip_policy_drops_the_failed_batch(aws: LocalAws) -> None:
    calls, stats = run_policy(aws, "skip")
    assert calls == ["initialize", "x0:0", "x0:2"]
    assert stats["processor_errors"] == 1 and stats["batches_skipped"] == 1


def test_stop_shard_policy_resumes_from_the_checkpoint(aws: LocalAws) -> None:
    calls, stats = run_policy(aws, "stop_shard")
    # The lease is released and taken again: a new processor starts after x0:0.
    assert calls == ["initialize", "x0:0", "initialize", "x0:1", "x0:2"]
    assert stats["processor_errors"] == 1


def test_split_and_merge_under_a_steady_producer(aws: LocalAws) -> None:
    stream = aws.create_stream(shards=2)
    delivered: List[bytes] = []
    ended: List[str] = []
    first_delivery: Dict[str, float] = {}
    ended_at: Dict[str, float] = {}
    lock = threading.Lock()

    class Processor(RecordProcessor):
        def initialize(self, input: InitializeInput) -> None:
            self.shard = input.shard_id

        def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
            with lock:
                first_delivery.setdefault(batch.shard_id, time.monotonic())
                delivered.extend(r.data for r in batch)
            checkpointer.checkpoint()

        def shard_ended(self, checkpointer: Checkpointer) -> None:
            checkpointer.checkpoint()
            with lock:
                ended.append(self.shard)
                ended_at[self.shard] = time.monotonic()

    running = Running(Worker(stream=stream, application=aws.unique_name("reshard"), processor=Processor,
                             initial_position="TRIM_HORIZON", **FAST, **aws.worker_options()))
    stop = threading.Event()
    written: List[bytes] = []

    def produce() -> None:
        n = 0
        while not stop.is_set():
            batch = keyed("r", 16, 1, start=n)
            aws.put(stream, batch, aggregated=n % 2 == 0)
            written.extend(d for _, d in batch)
            n += 1
            time.sleep(0.02)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(0.5)
        aws.split_shard(stream, "shardId-000000000000")
        time.sleep(0.5)
        open_shards = [s.shard_id for s in aws.shards(stream) if s.open]
        # After the split: child, child, shardId-1 in hash key order; merge the last two.
        aws.merge_shards(stream, open_shards[1], open_shards[2])
        time.sleep(0.5)
    finally:
        stop.set()
        producer.join()
    wait_until(lambda: len(set(delivered)) >= len(written), 60,
               lambda: f"{len(set(delivered))} of {len(written)}; ended {ended}")
    running.stop()
    assert set(delivered) == set(written)
    assert [d for d, n in Counter(delivered).items() if n > 1] == []
    assert check_order(delivered) == []
    shards = aws.shards(stream)
    closed = {s.shard_id for s in shards if not s.open}
    assert set(ended) == closed and len(closed) == 3
    for s in shards:
        for parent in s.parents:
            if s.shard_id in first_delivery:
                assert ended_at[parent] <= first_delivery[s.shard_id], f"{s.shard_id} before its parent {parent} ended"
