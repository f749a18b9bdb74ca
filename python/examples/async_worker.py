"""The function form inside an asyncio program: each batch is checkpointed
when the coroutine returns.

    python async_worker.py orders orders-etl
"""

from __future__ import annotations

import asyncio
import sys

from kinesis_fleet import Batch, Worker


async def handle(batch: Batch) -> None:
    for record in batch:
        await asyncio.sleep(0)  # e.g. an async HTTP call per record
        print(batch.shard_id, record.partition_key, len(record.data))


async def main(stream: str, application: str) -> None:
    worker = Worker(stream=stream, application=application, processor=handle)
    await worker.run_async()  # SIGINT / SIGTERM: graceful shutdown


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
