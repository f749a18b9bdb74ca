"""``python -m kinesis_fleet demo``: the ``kfleet demo`` with a Python processor.

Starts the embedded emulators in this process, creates a stream, produces
records (four in five rounds packed into KPL aggregates) while a worker
whose processor is Python consumes them, checks every record arrived once
and in per-key order, and prints the same summary line as ``kfleet demo``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from kinesis_fleet import Batch, Checkpointer, RecordProcessor, Worker
from kinesis_fleet.testing import LocalAws


class Tally:
    """What the demo processors saw, across shards."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: Set[Tuple[int, int]] = set()
        self.last_counter: Dict[int, int] = {}
        self.duplicates = 0
        self.order_violations = 0
        self.foreign = 0

    def record(self, data: bytes) -> None:
        parsed = parse_record(data)
        if parsed is None:
            self.foreign += 1
            return
        if parsed in self.seen:
            self.duplicates += 1
            return
        self.seen.add(parsed)
        key, counter = parsed
        last = self.last_counter.get(key)
        self.last_counter[key] = counter
        if last is not None and counter < last:
            self.order_violations += 1


def parse_record(data: bytes) -> Optional[Tuple[int, int]]:
    try:
        text = data.decode()
        key, counter = text[len("key-") :].split(":", 1) if text.startswith("key-") else ("", "")
        return int(key), int(counter)
    except ValueError:
        return None


def produce(aws: LocalAws, stream: str, records: int, keys: int) -> None:
    """``records`` records over ``keys`` keys in rounds: one counter per key
    per round, four aggregated rounds for every plain one."""
    sent, round_ = 0, 0
    while sent < records:
        batch = [
            (f"key-{k}", f"key-{k}:{round_}".encode()) for k in range(min(keys, records - sent))
        ]
        aws.put(stream, batch, aggregated=round_ % 5 != 4)
        sent += len(batch)
        round_ += 1


def demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    tally = Tally()

    class DemoProcessor(RecordProcessor):
        def process_records(self, batch: Batch, checkpointer: Checkpointer) -> None:
            with tally.lock:
                for record in batch:
                    tally.record(record.data)
            checkpointer.checkpoint()

        def shutdown_requested(self, checkpointer: Checkpointer) -> None:
            checkpointer.checkpoint()

    with LocalAws(args.backend) as aws:
        stream = aws.create_stream(aws.unique_name("demo"), args.shards)
        print(
            f"python -m kinesis_fleet demo: {aws.backend} emulators up (Kinesis "
            f"{aws.kinesis_endpoint}, DynamoDB {aws.dynamodb_endpoint}); stream {stream} "
            f"with {args.shards} shards",
            file=sys.stderr,
        )
        worker = Worker(
            stream=stream,
            application=aws.unique_name("demo-app"),
            processor=DemoProcessor,
            initial_position="TRIM_HORIZON",
            poll_interval=0.2,
            heartbeat_interval=0.5,
            **aws.worker_options(),
        )
        failures: List[BaseException] = []

        def run(target: Callable[[], object]) -> None:
            try:
                target()
            except BaseException as e:  # reported below
                failures.append(e)

        consumer = threading.Thread(target=run, args=(worker.run,), name="demo-worker")
        producer = threading.Thread(
            target=run, args=(lambda: produce(aws, stream, args.records, args.keys),), name="demo-producer"
        )
        consumer.start()
        producer.start()
        delivered = watch(args, tally, failures)
        worker.shutdown()
        consumer.join()
        producer.join()
        for failure in failures:
            print(f"python -m kinesis_fleet demo: {failure!r}", file=sys.stderr)

    lost = max(args.records - delivered, 0)
    if tally.order_violations or tally.foreign:
        print(
            f"python -m kinesis_fleet demo: {tally.order_violations} per-key order violations, "
            f"{tally.foreign} unexpected records",
            file=sys.stderr,
        )
    print(f"python -m kinesis_fleet demo: finished in {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(f"demo: produced={args.records} delivered={delivered} lost={lost} duplicates={tally.duplicates}")
    return 0 if lost == 0 and tally.order_violations == 0 and not failures else 1


def watch(args: argparse.Namespace, tally: Tally, failures: List[BaseException]) -> int:
    """Waits until every record arrived or none arrived for the stall
    timeout; returns the distinct records delivered."""
    last, last_change = 0, time.monotonic()
    while True:
        time.sleep(0.2)
        with tally.lock:
            delivered = len(tally.seen)
        if delivered != last:
            last, last_change = delivered, time.monotonic()
        if delivered >= args.records:
            time.sleep(0.5)  # anything delivered twice would arrive shortly after
            with tally.lock:
                return len(tally.seen)
        if failures:
            return delivered
        if time.monotonic() - last_change >= args.stall_timeout_secs:
            print(
                f"python -m kinesis_fleet demo: no new record for {args.stall_timeout_secs} s; stopping",
                file=sys.stderr,
            )
            return delivered


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kinesis_fleet")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_args = commands.add_parser("demo", help="everything on local emulators, checked record by record")
    demo_args.add_argument("--shards", type=int, default=4, help="shards in the demo stream (1-64)")
    demo_args.add_argument("--records", type=int, default=20_000, help="user records to produce")
    demo_args.add_argument("--keys", type=int, default=200, help="distinct partition keys (per-key order is checked)")
    demo_args.add_argument("--backend", default="embedded", choices=["embedded", "npm"])
    demo_args.add_argument("--stall-timeout-secs", type=float, default=30.0)
    args = parser.parse_args(argv)
    if not 1 <= args.shards <= 64 or args.records < 1 or args.keys < 1:
        parser.error("--shards must be 1 to 64, --records and --keys at least 1")
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
