"""Delivery: every record once and in per-key order, resume from a checkpoint
(also inside a KPL aggregate), two-phase checkpoints, async processors, the
function form and configuration errors."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Dict, List, Optional

import pytest
from conftest import FAST, Running, check_order, keyed, wait_until

import kinesis_fleet
from kinesis_fleet import Batch, Checkpointer, InitializeInput, RecordProcessor, Worker
from kinesis_fleet.testing import LocalAws


class Collect(RecordProcessor):
    """Records every payload, checkpoints after each batch and on shutdown."""

    delivered: List[bytes] = []
    lock = threading.Lock()

    def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
        with self.lock:
            self.delivered.extend(r.data for r in batch)
        checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        checkpointer.checkpoint()


def test_every_record_once_in_key_order(aws: LocalAws) -> None:
    stream = aws.create_stream(shards=2)
    records = keyed("k", 20, 50)
    for i in range(0, len(records), 100):
        aws.put(stream, records[i : i + 100], aggregated=(i // 100) % 2 == 0)

    class Processor(Collect):
        delivered: List[bytes] = []

    running = Running(
        Worker(stream=stream, application=aws.unique_name("once"), processor=Processor,
               initial_position="TRIM_HORIZON", **FAST, **aws.worker_options())
    )
    wait_until(lambda: len(Processor.delivered) >= len(records), 30,
               lambda: f"{len(Processor.delivered)} of {len(records)}")
    running.stop()
    counts = Counter(Processor.delivered)
    assert sorted(counts) == sorted(d for _, d in records)
    assert [d for d, n in counts.items() if n > 1] == []
    assert check_order(Processor.delivered) == []
    assert running.worker.stats()["records_delivered"] == len(records)


def test_resume_inside_an_aggregate_and_pending_state(aws: LocalAws) -> None:
    stream = aws.create_stream(shards=1)
    app = aws.unique_name("resume")
    aws.put(stream, keyed("a", 1, 10), aggregated=True)
    seen_first: List[kinesis_fleet.Record] = []
    done = threading.Event()

    class First(RecordProcessor):
        def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
            for record in batch:
                seen_first.append(record)
                if record.data == b"a0:4":
                    checkpointer.checkpoint(record)
            if any(r.data == b"a0:9" for r in batch):
                checkpointer.prepare_checkpoint(b"state-1")
                done.set()

    first = Running(Worker(stream=stream, application=app, processor=First,
                           initial_position="TRIM_HORIZON", **FAST, **aws.worker_options()))
    wait_until(done.is_set, 30, lambda: f"{len(seen_first)} records")
    first.stop()
    assert all(r.aggregated for r in seen_first)
    fifth = next(r for r in seen_first if r.data == b"a0:4")

    inits: List[InitializeInput] = []
    second_seen: List[bytes] = []

    class Second(RecordProcessor):
        def initialize(self, input: InitializeInput) -> None:
            inits.append(input)

        def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
            second_seen.extend(r.data for r in batch)

    second = Running(Worker(stream=stream, application=app, processor=Second,
                            initial_position="TRIM_HORIZON", **FAST, **aws.worker_options()))
    wait_until(lambda: len(second_seen) >= 5, 30, lambda: repr(second_seen))
    second.stop()
    assert second_seen == [f"a0:{n}".encode() for n in range(5, 10)]
    # Inside the aggregate: the checkpoint names the user record (sequence/sub-sequence).
    assert fifth.sub_sequence_number == 4
    assert inits[0].checkpoint == f"{fifth.sequence_number}/4"
    last = seen_first[-1]
    assert inits[0].pending_checkpoint == f"{last.sequence_number}/{last.sub_sequence_number}"
    assert inits[0].pending_checkpoint_state == b"state-1"


def test_async_processor_and_record_fields(aws: LocalAws) -> None:
    stream = aws.create_stream(shards=1)
    aws.put(stream, keyed("b", 3, 5))
    got: List[kinesis_fleet.Record] = []
    events: List[str] = []

    class Async(RecordProcessor):
        async def initialize(self, input: InitializeInput) -> None:
            await asyncio.sleep(0)
            events.append("initialize")

        async def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
            await asyncio.sleep(0.001)
            got.extend(batch.records)
            checkpointer.checkpoint(batch[len(batch) - 1])

        async def shutdown_requested(self, checkpointer: Checkpointer) -> None:
            events.append("shutdown_requested")

    running = Running(Worker(stream=stream, application=aws.unique_name("async"), processor=Async,
                             initial_position="TRIM_HORIZON", **FAST, **aws.worker_options()))
    wait_until(lambda: len(got) >= 15, 30, lambda: f"{len(got)} records")
    running.stop()
    assert events == ["initialize", "shutdown_requested"]
    r = got[0]
    assert r.partition_key == "b0" and r.data == b"b0:0" and not r.aggregated
    assert r.sub_sequence_number == 0 and r.sequence_number.isdigit()
    assert r.approximate_arrival is not None and r.approximate_arrival.tzinfo is not None


def test_function_form_under_run_async(aws: LocalAws) -> None:
    stream = aws.create_stream(shards=2)
    aws.put(stream, keyed("c", 10, 10))
    got: List[bytes] = []
    app = aws.unique_name("fn")

    async def handle(batch: Batch) -> None:
        await asyncio.sleep(0)
        got.extend(r.data for r in batch)

    async def main() -> Dict[str, int]:
        worker = Worker(stream=stream, application=app, processor=handle,
                        initial_position="TRIM_HORIZON", **FAST, **aws.worker_options())
        task = asyncio.ensure_future(worker.run_async(handle_signals=False))
        while len(got) < 100:
            await asyncio.sleep(0.05)
        worker.shutdown()
        await asyncio.wait_for(task, 30)
        return worker.stats()

    stats = asyncio.run(asyncio.wait_for(main(), 60))
    assert sorted(got) == sorted(d for _, d in keyed("c", 10, 10))
    # The function form checkpoints each batch: a new worker gets nothing again.
    assert stats["checkpoints"] >= 2
    again: List[bytes] = []
    rerun = Running(Worker(stream=stream, application=app, processor=lambda b: again.extend(r.data for r in b),
                           initial_position="TRIM_HORIZON", **FAST, **aws.worker_options()))
    aws.put(stream, [("c0", b"c0:10")])
    wait_until(lambda: again == [b"c0:10"], 30, lambda: repr(again))
    rerun.stop()


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("stream", dict(stream="")),
        ("application", dict(application="a/b")),
        ("failover", dict(failover=-1.0)),
        ("error_policy", dict(error_policy="ignore")),
        ("retrieval", dict(retrieval="carrier-pigeon")),
        ("processor", dict(processor=Collect())),
        ("poll_interval", dict(retrieval="fanout", poll_interval=0.1)),
    ],
)
def test_configuration_errors_name_the_field(aws: LocalAws, field: str, kwargs: Dict[str, object]) -> None:
    args: Dict[str, object] = dict(stream="s", application="app", processor=Collect)
    args.update(kwargs)
    with pytest.raises(kinesis_fleet.ConfigurationError) as raised:
        Worker(**args, **aws.worker_options())  # type: ignore[arg-type]
    assert raised.value.field == field
    assert isinstance(raised.value, kinesis_fleet.KinesisFleetError)


def test_missing_stream_is_typed(aws: LocalAws) -> None:
    worker = Worker(stream="no-such-stream", application=aws.unique_name("missing"),
                    processor=Collect, **aws.worker_options())
    with pytest.raises(kinesis_fleet.StreamNotFound) as raised:
        worker.run()
    assert raised.value.stream == "no-such-stream"
    assert raised.value.retryable is False


def test_checkpointer_used_after_its_callback(aws: LocalAws) -> None:
    stream = aws.create_stream(shards=1)
    aws.put(stream, [("k", b"x")])
    kept: List[Checkpointer] = []

    class Keep(RecordProcessor):
        def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
            kept.append(checkpointer)

    running = Running(Worker(stream=stream, application=aws.unique_name("kept"), processor=Keep,
                             initial_position="TRIM_HORIZON", **FAST, **aws.worker_options()))
    wait_until(lambda: bool(kept), 30, lambda: "no batch")
    with pytest.raises(kinesis_fleet.CheckpointError):
        kept[0].checkpoint()
    running.stop()
