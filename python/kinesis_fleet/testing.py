"""Local Kinesis and DynamoDB for tests, in this process: no AWS account, no
Docker, nothing to install.

    from kinesis_fleet.testing import LocalAws

    with LocalAws() as aws:
        stream = aws.create_stream(shards=2)
        aws.put(stream, [("key-1", b"hello")])
        worker = Worker(stream=stream, application=aws.unique_name("app"),
                        processor=handle, initial_position="TRIM_HORIZON",
                        **aws.worker_options())
"""

from __future__ import annotations

from types import TracebackType
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple, Type, TypedDict

from kinesis_fleet import _native


class WorkerOptions(TypedDict):
    """``Worker`` keyword arguments that point it at the emulators."""

    region: str
    kinesis_endpoint: str
    dynamodb_endpoint: str
    credentials: Tuple[str, str]


class Boto3Options(TypedDict):
    """``boto3.client(service, **options)`` keyword arguments for an emulator."""

    endpoint_url: str
    region_name: str
    aws_access_key_id: str
    aws_secret_access_key: str


class Shard(NamedTuple):
    """A shard of a stream and where it came from."""

    shard_id: str
    parents: List[str]
    open: bool


#: Credentials the emulators accept (any are accepted).
CREDENTIALS = ("local", "local")


class LocalAws:
    """A Kinesis and a DynamoDB emulator on free loopback ports, started in
    this process (the ones ``kfleet demo`` uses). Use it as a context
    manager, or call :meth:`close`.

    ``backend`` is ``"embedded"`` (default) or ``"npm"`` (kinesis-mock and
    dynalite, which need Node.js and ``npm ci --prefix testenv``); unset, the
    ``KINESIS_FLEET_BACKEND`` environment variable decides.
    """

    def __init__(self, backend: Optional[str] = None) -> None:
        self._native = _native.LocalAws(backend)

    def __enter__(self) -> "LocalAws":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stops both emulators; their data is gone."""
        self._native.close()

    @property
    def kinesis_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the Kinesis emulator."""
        return self._native.kinesis_endpoint

    @property
    def dynamodb_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the DynamoDB emulator."""
        return self._native.dynamodb_endpoint

    @property
    def region(self) -> str:
        return self._native.region

    @property
    def backend(self) -> str:
        return self._native.backend

    def worker_options(self) -> WorkerOptions:
        """``Worker(..., **aws.worker_options())`` connects to these emulators."""
        return WorkerOptions(
            region=self.region,
            kinesis_endpoint=self.kinesis_endpoint,
            dynamodb_endpoint=self.dynamodb_endpoint,
            credentials=CREDENTIALS,
        )

    def boto3_options(self, service: str) -> Boto3Options:
        """``boto3.client(service, **aws.boto3_options(service))`` for
        ``"kinesis"`` or ``"dynamodb"``."""
        endpoints = {"kinesis": self.kinesis_endpoint, "dynamodb": self.dynamodb_endpoint}
        if service not in endpoints:
            raise ValueError(f"service must be 'kinesis' or 'dynamodb', got {service!r}")
        return Boto3Options(
            endpoint_url=endpoints[service],
            region_name=self.region,
            aws_access_key_id=CREDENTIALS[0],
            aws_secret_access_key=CREDENTIALS[1],
        )

    def env(self) -> Dict[str, str]:
        """Environment variables that point AWS SDKs (and a ``Worker`` in a
        child process) at these emulators."""
        return {
            "AWS_ENDPOINT_URL_KINESIS": self.kinesis_endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": CREDENTIALS[0],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS[1],
        }

    def unique_name(self, prefix: str) -> str:
        """A stream or application name unique per process and call."""
        return self._native.unique_name(prefix)

    def create_stream(self, name: Optional[str] = None, shards: int = 1) -> str:
        """Creates a stream (a unique name unless given), waits until it is
        ACTIVE and returns its name."""
        name = name if name is not None else self.unique_name("stream")
        self._native.create_stream(name, shards)
        return name

    def stream_identifier(self, stream: str) -> str:
        """The KCL's multi-stream identifier of ``stream``,
        ``account:name:creationEpoch`` (as a KCL multi-stream application
        names its streams)."""
        return self._native.stream_identifier(stream)

    def put(
        self, stream: str, records: Iterable[Tuple[str, bytes]], *, aggregated: bool = False
    ) -> int:
        """Writes ``(partition_key, data)`` records, in order per key; with
        ``aggregated`` packed into KPL aggregates. Returns the Kinesis records written."""
        return self._native.put(stream, list(records), aggregated)

    def split_shard(self, stream: str, shard_id: str) -> None:
        """Splits an open shard in the middle of its hash key range."""
        self._native.split_shard(stream, shard_id)

    def merge_shards(self, stream: str, shard_id: str, adjacent_shard_id: str) -> None:
        """Merges two adjacent open shards."""
        self._native.merge_shards(stream, shard_id, adjacent_shard_id)

    def shards(self, stream: str) -> List[Shard]:
        """Every shard of the stream, open or closed, with its parents."""
        return [Shard(s, list(p), o) for s, p, o in self._native.shards(stream)]


__all__ = ["Boto3Options", "LocalAws", "Shard", "WorkerOptions"]
