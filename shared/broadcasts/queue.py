"""Queue `broadcast-sends`: putting a broadcast's chunks and deferred recipients on it.

Messages are plain JSON text (host.json's messageEncoding is none: the functions decode what
they get, so a malformed message is theirs to log and drop)."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from shared.broadcasts.model import Chunk, Task
from shared.records import storage

QUEUE = "broadcast-sends"

POISON_QUEUE = f"{QUEUE}-poison"

ENQUEUE_CONCURRENCY = 32

M = TypeVar("M", Task, Chunk)


async def enqueue(messages: list[M], budget: float | None = None) -> list[M]:
    """Put each message on the queue; the ones that could not be put (storage), or were not put
    within `budget` seconds (those are cancelled: one may have reached the queue all the same,
    and is then sent, as its recipients' rows will show)."""
    if not messages:
        return []
    limit = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def put(one: M) -> None:
        async with limit:
            await storage.on_queue(QUEUE, lambda q: q.send_message(one.to_json()))

    puts = [asyncio.ensure_future(put(m)) for m in messages]
    _, pending = await asyncio.wait(puts, timeout=budget)
    for late in pending:
        late.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    missed = []
    for message, put_one in zip(messages, puts, strict=True):
        if put_one in pending:
            missed.append(message)
        elif (error := put_one.exception()) is not None:
            if not isinstance(error, storage.StorageUnavailable):
                raise error
            missed.append(message)
    return missed


async def put_back(chunk: Chunk) -> None:
    """Queue what is left of a chunk, visible at once: the next invocation carries on."""
    if chunk.recipients and await enqueue([chunk]):
        raise storage.StorageUnavailable("the rest of a chunk could not be queued")


async def defer(task: Task, after: float) -> None:
    """Put the task back on the queue, visible `after` seconds from now, counted as a deferral
    (the copy's dequeue count starts again: how a 429 or an in-flight key waits without using
    up the message's maxDequeueCount tries)."""
    copy, delay = task.deferred().to_json(), max(0, round(after))
    await storage.on_queue(QUEUE, lambda q: q.send_message(copy, visibility_timeout=delay))

