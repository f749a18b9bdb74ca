"""``Worker``: runs processors for the shards of one stream (or several), as
a member of the fleet of workers sharing its application name."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
from datetime import datetime, timedelta
from types import FrameType
from typing import Any, Callable, Coroutine, Dict, List, Optional, Sequence, Tuple, Union

from kinesis_fleet import _native
from kinesis_fleet._native import ConfigurationError
from kinesis_fleet.processor import FunctionProcessor, ProcessorArg, RecordProcessor

Seconds = Union[float, timedelta]


def _seconds(field: str, value: Optional[Seconds]) -> Optional[float]:
    return None if value is None else _seconds_of(field, value)


def _seconds_of(field: str, value: Seconds) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise _config_error(field, f"must be seconds (a number or a timedelta), got {value!r}")


def _config_error(field: str, message: str) -> ConfigurationError:
    error = ConfigurationError(f"invalid configuration: `{field}` {message}")
    error.field = field
    error.retryable = False
    return error


def _factory(
    processor: Optional[ProcessorArg],
    processor_factory: Optional[Callable[[str], RecordProcessor]],
) -> Callable[[str], RecordProcessor]:
    if (processor is None) == (processor_factory is None):
        raise _config_error("processor", "give exactly one of processor= and processor_factory=")
    if processor_factory is not None:
        return processor_factory
    if isinstance(processor, type):
        if not issubclass(processor, RecordProcessor):
            raise _config_error("processor", f"{processor.__name__} is not a RecordProcessor subclass")
        cls = processor
        return lambda _shard_id: cls()
    if isinstance(processor, RecordProcessor):
        raise _config_error(
            "processor",
            "must be the class (one instance is made per shard) or a function, "
            "not an instance; use processor_factory= to construct instances yourself",
        )
    if callable(processor):
        function = processor
        return lambda _shard_id: FunctionProcessor(function)
    raise _config_error("processor", f"must be a RecordProcessor subclass or a function, got {processor!r}")


class Worker:
    """Consumes ``stream`` as a member of the fleet named ``application``.

    ``streams=[...]`` instead of ``stream`` consumes several streams with one
    lease table, in the KCL's multi-stream lease format; each may be a name,
    an ARN or the KCL's ``account:name:creationEpoch``, and
    ``InitializeInput.stream_name`` tells a processor which stream its shard
    belongs to.

    ``processor`` is a :class:`RecordProcessor` subclass (one instance per
    shard lease) or a function called with each :class:`~kinesis_fleet.Batch`
    (checkpointed when it returns); ``processor_factory(shard_id)`` builds
    instances yourself. Times are seconds or ``timedelta``s. AWS settings come
    from the standard chain (profiles, ``AWS_REGION``, ``AWS_ENDPOINT_URL``,
    ``AWS_ENDPOINT_URL_KINESIS``/``_DYNAMODB``) unless given here.

    ``metrics_addr="0.0.0.0:9464"`` serves the worker's Prometheus metrics
    (the ``kinesis_fleet_*`` set in the README) at ``/metrics`` on that
    address, one exporter per process; off by default.

    Raises :class:`~kinesis_fleet.ConfigurationError` naming the field when a
    setting is out of range.
    """

    def __init__(
        self,
        *,
        stream: Optional[str] = None,
        streams: Optional[Sequence[str]] = None,
        application: str,
        processor: Optional[ProcessorArg] = None,
        processor_factory: Optional[Callable[[str], RecordProcessor]] = None,
        initial_position: Union[str, datetime] = "LATEST",
        retrieval: str = "polling",
        failover: Optional[Seconds] = None,
        heartbeat_interval: Optional[Seconds] = None,
        worker_id: Optional[str] = None,
        lease_table: Optional[str] = None,
        max_leases_per_worker: Optional[int] = None,
        max_records: Optional[int] = None,
        poll_interval: Optional[Seconds] = None,
        shard_sync_interval: Optional[Seconds] = None,
        removed_stream_lease_deletion_delay: Optional[Seconds] = None,
        shutdown_timeout: Optional[Seconds] = None,
        error_policy: str = "retry",
        retry_backoff: Tuple[Seconds, Seconds] = (0.1, 30.0),
        region: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        kinesis_endpoint: Optional[str] = None,
        dynamodb_endpoint: Optional[str] = None,
        credentials: Optional[Tuple[str, str]] = None,
        metrics_addr: Optional[str] = None,
    ) -> None:
        if isinstance(initial_position, datetime):
            if initial_position.tzinfo is None:
                raise _config_error("initial_position", "a datetime must be timezone-aware")
            position, at = "AT_TIMESTAMP", initial_position.timestamp()
        else:
            position, at = str(initial_position).upper(), None
        backoff = (_seconds_of("retry_backoff", retry_backoff[0]), _seconds_of("retry_backoff", retry_backoff[1]))
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._own_loop: Optional[threading.Thread] = None
        self._loop_lock = threading.Lock()
        self._native = _native.Worker(
            stream=stream,
            streams=None if streams is None else [str(s) for s in streams],
            application=application,
            factory=_factory(processor, processor_factory),
            run_coroutine=self._run_coroutine,
            initial_position=position,
            at_timestamp=at,
            retrieval=retrieval,
            failover=_seconds("failover", failover),
            heartbeat_interval=_seconds("heartbeat_interval", heartbeat_interval),
            worker_id=worker_id,
            lease_table=lease_table,
            max_leases_per_worker=max_leases_per_worker,
            max_records=max_records,
            poll_interval=_seconds("poll_interval", poll_interval),
            shard_sync_interval=_seconds("shard_sync_interval", shard_sync_interval),
            removed_stream_lease_deletion_delay=_seconds(
                "removed_stream_lease_deletion_delay", removed_stream_lease_deletion_delay
            ),
            shutdown_timeout=_seconds("shutdown_timeout", shutdown_timeout),
            error_policy=error_policy,
            retry_backoff=backoff,
            region=region,
            endpoint_url=endpoint_url,
            kinesis_endpoint=kinesis_endpoint,
            dynamodb_endpoint=dynamodb_endpoint,
            credentials=credentials,
            metrics_addr=metrics_addr,
        )

    @property
    def worker_id(self) -> str:
        """This worker's id in the lease table (``leaseOwner``)."""
        return self._native.worker_id

    @property
    def streams(self) -> List[str]:
        """The names of the streams a ``streams=[...]`` worker consumes now."""
        return self._native.streams()

    def add_stream(self, stream: str) -> bool:
        """Adds a stream (a name, an ARN or ``account:name:creationEpoch``) to
        a ``streams=[...]`` worker while it runs; False if one of its name is
        already there. Its shards start at ``initial_position`` once the
        fleet's leader has synced it. Make the same change on every worker."""
        return self._native.add_stream(stream)

    def remove_stream(self, name: str) -> bool:
        """Removes a stream from a ``streams=[...]`` worker's set; False if it
        was not there. Its leases are still consumed for
        ``removed_stream_lease_deletion_delay`` (default 5 minutes), then the
        leader deletes them. Make the same change on every worker."""
        return self._native.remove_stream(name)

    def stats(self) -> Dict[str, int]:
        """The worker's counters: ``records_delivered``, ``processor_errors``,
        ``checkpoints``, ``leases_taken``, ..."""
        return self._native.stats()

    def shutdown(self) -> None:
        """Stops the worker gracefully: processors finish their batch, get
        ``shutdown_requested`` and may checkpoint, leases are handed back.
        Thread-safe; ``run()`` / ``run_async()`` return once done."""
        self._native.shutdown()

    def run(self) -> None:
        """Runs until :meth:`shutdown`, SIGTERM or Ctrl-C, with the GIL released.

        In the main thread SIGTERM shuts the worker down gracefully (and
        ``run`` returns); Ctrl-C does too and then raises
        ``KeyboardInterrupt``. A second Ctrl-C stops waiting for processors.
        """
        previous = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            self._native.run()
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            self._stop_own_loop()

    async def run_async(self, *, handle_signals: bool = True) -> None:
        """Runs on the current asyncio loop until :meth:`shutdown`; ``async
        def`` callbacks run on this loop. With ``handle_signals`` (in the
        main thread) SIGINT and SIGTERM shut the worker down gracefully.
        Cancelling the task shuts it down too, then re-raises."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        done: asyncio.Future[None] = loop.create_future()

        def settle(error: Optional[BaseException]) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def finished(error: Optional[BaseException]) -> None:
            loop.call_soon_threadsafe(settle, error)

        handled = []
        if handle_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, self.shutdown)
                    handled.append(signum)
                except (NotImplementedError, RuntimeError):
                    pass
        self._native.start_background(finished)
        try:
            try:
                await asyncio.shield(done)
            except asyncio.CancelledError:
                self.shutdown()
                while not done.done():
                    try:
                        await asyncio.shield(done)
                    except asyncio.CancelledError:
                        pass
                raise
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)

    def _on_sigterm(self, signum: int, frame: Optional[FrameType]) -> None:
        self.shutdown()

    def _run_coroutine(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Runs an ``async def`` callback's coroutine on the worker's loop
        (called from the worker's threads, never from the loop's own)."""
        future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
            coroutine, self._event_loop()
        )
        future.result()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="kinesis-fleet-asyncio", daemon=True
                )
                thread.start()
                self._loop, self._own_loop = loop, thread
            return self._loop

    def _stop_own_loop(self) -> None:
        with self._loop_lock:
            if self._own_loop is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._own_loop.join(timeout=5)
                self._loop.close()
                self._loop, self._own_loop = None, None
