"""Fixtures: one set of embedded emulators per test session, and polls with deadlines."""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

from kinesis_fleet import Worker
from kinesis_fleet.testing import LocalAws

#: Short fleet timings so failover and handoff tests take seconds.
FAST = dict(failover=3.0, heartbeat_interval=0.5, poll_interval=0.1, shard_sync_interval=2.0)


@pytest.fixture(scope="session")
def aws() -> Iterator[LocalAws]:
    with LocalAws() as local:
        yield local


def wait_until(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    """Polls `condition` until it holds; fails with what was seen after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting; saw {what()}")
        time.sleep(0.05)


class Running:
    """A worker running `run()` in a thread; `stop()` shuts it down and re-raises its failure."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as e:
            self.error = e

    def stop(self, timeout: float = 30.0) -> None:
        self.worker.shutdown()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error


def keyed(prefix: str, keys: int, rounds: int, start: int = 0) -> List[Tuple[str, bytes]]:
    """`rounds` records per key, `key:counter` payloads, counters increasing per key."""
    return [
        (f"{prefix}{k}", f"{prefix}{k}:{n}".encode())
        for n in range(start, start + rounds)
        for k in range(keys)
    ]


def check_order(payloads: List[bytes]) -> List[str]:
    """Per-key order violations among delivered `key:counter` payloads."""
    last: dict = {}
    problems = []
    for p in payloads:
        key, counter = p.decode().rsplit(":", 1)
        if key in last and int(counter) <= last[key]:
            problems.append(f"{key}: {counter} after {last[key]}")
        last[key] = int(counter)
    return problems
