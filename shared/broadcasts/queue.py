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


async def enqueue(messages: list[M], budget: float | None = None) -> tuple[list[M], list[M]]:
    """Put each message on the queue, within `budget` seconds (the rest are cancelled):
    (the ones not put, the ones perhaps put). Not put: storage refused them or could not be
    reached, or their turn never came. Perhaps put: their request went out and no answer said
    what became of it (none came in time, or it was lost, or was a 500): each may be on the
    queue, and is then sent, so nothing may report it as not sent. (The storage SDK's own retry
    can follow a lost answer with a refusal: a message it reports not put may be on the queue
    too, which is why a keyed broadcast carries on rather than starting again.)"""
    if not messages:
        return [], []
    limit = asyncio.Semaphore(ENQUEUE_CONCURRENCY)
    sent: set[int] = set()

    async def put(index: int, one: M) -> None:
        async with limit:
            sent.add(index)
            await storage.on_queue(QUEUE, lambda q: q.send_message(one.to_json()))

    puts = [asyncio.ensure_future(put(i, m)) for i, m in enumerate(messages)]
    _, pending = await asyncio.wait(puts, timeout=budget)
    for late in pending:
        late.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    missed: list[M] = []
    unsure: list[M] = []
    for index, (message, put_one) in enumerate(zip(messages, puts, strict=True)):
        if put_one in pending:
            (unsure if index in sent else missed).append(message)
        elif (error := put_one.exception()) is not None:
            if not isinstance(error, storage.StorageUnavailable):
                raise error
            (unsure if error.unknown else missed).append(message)
    return missed, unsure


async def put_back(chunk: Chunk) -> None:
    """Queue what is left of a chunk, visible at once: the next invocation carries on (a copy
    that reached the queue after all is harmless: each recipient is sent once)."""
    if chunk.recipients and any(await enqueue([chunk])):
        raise storage.StorageUnavailable("the rest of a chunk could not be queued")


async def defer(task: Task, after: float) -> None:
    """Put the task back on the queue, visible `after` seconds from now, counted as a deferral
    (the copy's dequeue count starts again: how a 429 or an in-flight key waits without using
    up the message's maxDequeueCount tries)."""
    copy, delay = task.deferred().to_json(), max(0, round(after))
    await storage.on_queue(QUEUE, lambda q: q.send_message(copy, visibility_timeout=delay))

