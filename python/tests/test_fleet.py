"""Fleets of worker processes: Python workers sharing a stream, a third
joining with nothing replayed, SIGTERM handing off, Ctrl-C, and a Python and
a Rust worker in one fleet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from conftest import check_order, keyed, wait_until

from kinesis_fleet.testing import LocalAws

HERE = Path(__file__).parent


class Process:
    """A worker process whose JSON lines are collected as they arrive."""

    def __init__(self, command: List[str], env: Dict[str, str]) -> None:
        self.events: List[dict] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(event)

    def of(self, kind: str) -> List[dict]:
        with self.lock:
            return [e for e in self.events if e.get("event") == kind]

    def shards(self) -> set:
        """Shards this worker initialized and has not given up."""
        held: set = set()
        with self.lock:
            for e in self.events:
                if e.get("event") == "initialize":
                    held.add(e["shard"])
                elif e.get("event") in ("shutdown_requested", "lease_lost"):
                    held.discard(e.get("shard"))
        return held

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            with self.lock:
                last = self.events[-10:]
            raise AssertionError(
                f"the worker did not exit within {timeout} s (its log is under the "
                f"captured stderr); its last events: {last}") from None
        self.reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def python_worker(aws: LocalAws, stream: str, app: str, worker_id: str) -> Process:
    # Its log (on stderr, shown when a test fails) at info level.
    env = dict(os.environ, **aws.env(), KFLEET_STREAM=stream, KFLEET_APPLICATION=app,
               KFLEET_WORKER_ID=worker_id, KFLEET_FAILOVER_SECS="3",
               KINESIS_FLEET_LOG="kinesis_fleet=info")
    return Process([sys.executable, str(HERE / "fleet_worker.py")], env)


def delivered(processes: List[Process]) -> List[str]:
    return [e["data"] for p in processes for e in p.of("record")]


@pytest.fixture
def processes() -> List[Process]:
    started: List[Process] = []
    yield started
    for p in started:
        p.kill()


def test_python_fleet_join_and_sigterm_handoff(aws: LocalAws, processes: List[Process]) -> None:
    stream = aws.create_stream(shards=4)
    app = aws.unique_name("pyfleet")
    a, b = python_worker(aws, stream, app, "py-a"), python_worker(aws, stream, app, "py-b")
    processes += [a, b]
    first = keyed("f", 40, 5)
    aws.put(stream, first)
    wait_until(lambda: len(delivered(processes)) >= len(first), 60,
               lambda: f"{len(delivered(processes))} of {len(first)}")
    wait_until(lambda: len(a.shards()) == 2 and len(b.shards()) == 2, 30,
               lambda: f"a={a.shards()} b={b.shards()}")

    c = python_worker(aws, stream, app, "py-c")
    processes.append(c)
    wait_until(lambda: len(c.shards()) >= 1, 30, lambda: f"c={c.shards()}")
    second = keyed("f", 40, 5, start=5)
    aws.put(stream, second)
    wait_until(lambda: len(delivered(processes)) >= len(first) + len(second), 60,
               lambda: f"{len(delivered(processes))} of {len(first) + len(second)}")
    assert c.of("record"), "the joining worker got no records"

    b.signal(signal.SIGTERM)
    assert b.wait() == 0
    assert b.of("exit") == [{"worker": "py-b", "event": "exit", "how": "returned"}]
    assert len(b.of("shutdown_requested")) == len(b.of("initialize"))
    third = keyed("f", 40, 5, start=10)
    aws.put(stream, third)
    total = len(first) + len(second) + len(third)
    wait_until(lambda: len(delivered(processes)) >= total, 60,
               lambda: f"{len(delivered(processes))} of {total}")
    data = delivered(processes)
    assert [d for d, n in Counter(data).items() if n > 1] == [], "replayed records"
    for p in processes:
        assert check_order([e["data"].encode() for e in p.of("record")]) == []


def test_ctrl_c_shuts_down_gracefully_then_raises(aws: LocalAws, processes: List[Process]) -> None:
    stream = aws.create_stream(shards=2)
    app = aws.unique_name("ctrlc")
    w = python_worker(aws, stream, app, "py-int")
    processes.append(w)
    aws.put(stream, keyed("i", 10, 2))
    wait_until(lambda: len(w.of("record")) >= 20, 60, lambda: f"{len(w.of('record'))} records")
    w.signal(signal.SIGINT)
    assert w.wait() == 130
    assert w.of("exit")[0]["how"] == "KeyboardInterrupt"
    # Both shards got shutdown_requested (and checkpointed) before the exit.
    assert len(w.of("shutdown_requested")) == 2 and w.shards() == set()
    # The leases were released: a new worker resumes at once, replaying nothing.
    n = python_worker(aws, stream, app, "py-next")
    processes.append(n)
    aws.put(stream, [("i0", b"i0:2")])
    wait_until(lambda: len(n.of("record")) >= 1, 30, lambda: "nothing")
    assert [e["data"] for e in n.of("record")] == ["i0:2"]


def rust_worker_binary() -> Optional[str]:
    path = os.environ.get("KINESIS_FLEET_RUST_WORKER")
    return path if path and Path(path).exists() else None


@pytest.mark.skipif(rust_worker_binary() is None,
                    reason="KINESIS_FLEET_RUST_WORKER (the fleet_worker example, set by cargo xtask test) not built")
def test_python_and_rust_workers_in_one_fleet(aws: LocalAws, processes: List[Process]) -> None:
    stream = aws.create_stream(shards=4)
    app = aws.unique_name("mixed")
    rust_env = dict(os.environ, **aws.env(), KFLEET_STREAM=stream, KFLEET_APPLICATION=app,
                    KFLEET_WORKER_ID="rust-1", KFLEET_FAILOVER_SECS="3", KFLEET_SHARD_SYNC_SECS="2")
    rust = Process([str(rust_worker_binary()), "--print-records"], rust_env)
    py = python_worker(aws, stream, app, "py-1")
    processes += [rust, py]
    records = keyed("m", 40, 5)
    aws.put(stream, records)
    wait_until(lambda: len(delivered(processes)) >= len(records), 60,
               lambda: f"{len(delivered(processes))} of {len(records)}")
    wait_until(lambda: len(py.shards()) == 2 and len({e["shard"] for e in rust.of("initialize")}) >= 2, 30,
               lambda: f"py={py.shards()} rust={rust.of('initialize')}")
    # The Python worker leaves; the Rust worker takes its shards and replays nothing.
    py.signal(signal.SIGTERM)
    assert py.wait() == 0
    more = keyed("m", 40, 2, start=5)
    aws.put(stream, more)
    wait_until(lambda: len(delivered(processes)) >= len(records) + len(more), 60,
               lambda: f"{len(delivered(processes))} of {len(records) + len(more)}")
    assert [d for d, n in Counter(delivered(processes)).items() if n > 1] == []
    assert len({e["shard"] for e in rust.of("initialize")}) == 4
