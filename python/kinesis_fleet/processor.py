"""The processor base class and the function form."""

from __future__ import annotations

import inspect
from typing import Awaitable, Callable, Optional, Union

from kinesis_fleet._native import Batch, Checkpointer, InitializeInput

#: What a callback may return: nothing (a plain method) or a coroutine (``async def``).
MaybeAwaitable = Optional[Awaitable[None]]


class RecordProcessor:
    """Processes the records of one shard.

    The worker creates one instance per shard lease and calls it from one
    thread at a time, in this order: :meth:`initialize`, :meth:`process_records`
    for each batch, then exactly one of :meth:`shard_ended`,
    :meth:`shutdown_requested` or :meth:`lease_lost`. Each method may be a
    plain method or ``async def`` (run on the worker's asyncio loop).

    An exception raised by a callback is handled by the worker's
    ``error_policy``: by default the same batch is delivered again after a
    backoff.
    """

    def initialize(self, input: InitializeInput) -> MaybeAwaitable:
        """Called once before the first batch; ``input.pending_checkpoint``
        and ``input.pending_checkpoint_state`` hold a two-phase checkpoint
        prepared and never committed."""
        return None

    def process_records(self, batch: Batch, checkpointer: Checkpointer) -> MaybeAwaitable:
        """Handles a batch; checkpoint through ``checkpointer`` once the
        records are safely processed."""
        raise NotImplementedError("RecordProcessor subclasses implement process_records")

    def shard_ended(self, checkpointer: Checkpointer) -> MaybeAwaitable:
        """Every record of a shard closed by a reshard was delivered. Must
        checkpoint (which writes ``SHARD_END``) so its child shards can
        start; the default does exactly that."""
        checkpointer.checkpoint()
        return None

    def shutdown_requested(self, checkpointer: Checkpointer) -> MaybeAwaitable:
        """The worker stops or hands the lease to another worker: flush and
        checkpoint now so that nothing is delivered twice."""
        return None

    def lease_lost(self) -> MaybeAwaitable:
        """Another worker owns the shard now; checkpoints are no longer
        possible. Drop what is buffered."""
        return None


#: The function form: called with each batch; the batch is checkpointed when it returns.
BatchFunction = Callable[[Batch], MaybeAwaitable]


class FunctionProcessor(RecordProcessor):
    """Adapts a function to :class:`RecordProcessor`: each batch is
    checkpointed after the function returns (or its coroutine finishes),
    ``SHARD_END`` at the end of a shard."""

    def __init__(self, function: BatchFunction) -> None:
        self._function = function

    def process_records(self, batch: Batch, checkpointer: Checkpointer) -> MaybeAwaitable:
        result = self._function(batch)
        if inspect.isawaitable(result):
            return _then_checkpoint(result, checkpointer)
        checkpointer.checkpoint()
        return None


async def _then_checkpoint(result: Awaitable[None], checkpointer: Checkpointer) -> None:
    await result
    checkpointer.checkpoint()


#: What ``Worker(processor=...)`` accepts.
ProcessorArg = Union["type[RecordProcessor]", BatchFunction]
