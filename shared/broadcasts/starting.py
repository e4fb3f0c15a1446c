"""Starting a broadcast: record its refused entries and its row, then queue its recipients
in chunks, within the accepting request's time."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from shared import telemetry
from shared.broadcasts import queue, table
from shared.broadcasts.model import BadRow, Broadcast, chunks
from shared.common import logs
from shared.records import storage

logger = logs.get_logger(__name__)

# Seconds the accepting request may spend queueing, then marking what did not make it: inside
# the host's 12 s functionTimeout, with time to answer.
QUEUE_BUDGET = 7.5

MARK_BUDGET = 2.5

ACCEPT_DEADLINE = QUEUE_BUDGET + MARK_BUDGET


class Accepted(NamedTuple):
    """What the accepting request did: the broadcast (an earlier attempt's, for a retried
    Idempotency-Key) and how many recipients were queued, were not, and may have been."""

    broadcast: Broadcast
    queued: int
    missed: int
    marked: bool  # the missed ones are recorded as failed
    unsure: int = 0  # their queue message's put has no known outcome: perhaps queued


async def accept(
    broadcast: Broadcast, accepted: list[str], refused: list[dict[str, str]],
    mark_failed: bool = True,
) -> Accepted:
    """Record the refused entries and the broadcast, then queue the accepted recipients in
    chunks. Raises StorageUnavailable only while nothing is queued (trying again is then safe);
    once queueing has begun, what could not be queued in time is counted in the answer instead,
    and (with `mark_failed`: no retry will carry the broadcast on) recorded as failed unless
    it settled already. What may have been queued is never recorded as failed: it may be sent.

    A broadcast whose row exists already (a retried Idempotency-Key whose first attempt died
    part way) keeps its row and secret, and is queued again: each recipient's own key makes
    sure that none is texted or called twice."""
    from azure.core.exceptions import ResourceExistsError

    kept = refused[: table.MAX_REFUSED_ROWS]
    await table.write_rows([table.refused_row(broadcast.id, r["to"], r["error"]) for r in kept])
    row = broadcast.row(len(accepted), len(refused))
    try:
        await storage.within_deadline(storage.on_table(table.TABLE, lambda t: t.create_entity(row)))
    except ResourceExistsError:
        existing = await storage.within_deadline(table.read_row(broadcast.id))
        if existing is None:
            raise storage.StorageUnavailable("the broadcast's row vanished") from None
        try:
            broadcast = Broadcast.from_row(existing)
        except BadRow as error:
            raise storage.StorageUnavailable(f"the broadcast's row cannot be read: {error}"
                                             ) from None
        row = existing
    await storage.within_deadline(table.index(broadcast.id, str(row.get("CreatedAt") or "")))
    not_put, perhaps = await queue.enqueue(
        chunks(broadcast, accepted, telemetry.current_traceparent()), QUEUE_BUDGET)
    missed = [to for chunk in not_put for to in chunk.recipients]
    unsure = sum(len(chunk.recipients) for chunk in perhaps)
    marked = not missed
    if missed or unsure:
        logger.error(
            "broadcasts id=%s outcome=partly-queued missed=%d unsure=%d of=%d",
            broadcast.id, len(missed), unsure, len(accepted),
        )
    if missed and mark_failed:
        try:
            await asyncio.wait_for(_mark_failed(broadcast.id, not_put), MARK_BUDGET)
            marked = True
        except (TimeoutError, storage.StorageUnavailable) as failure:
            logger.error("broadcasts id=%s outcome=not-marked missed=%d reason=%s",
                         broadcast.id, len(missed), failure or "took too long")
    return Accepted(broadcast, len(accepted) - len(missed) - unsure, len(missed), marked, unsure)


async def _mark_failed(broadcast: str, not_put: list[Any]) -> None:
    """Record as failed the recipients of chunks that were not queued, except any that settled
    already: an earlier attempt under the same Idempotency-Key may have sent them."""
    error = "could not be queued (storage unavailable or too slow): not sent"
    settled = await asyncio.gather(*(table.settled(broadcast, list(c.recipients))
                                     for c in not_put))
    await table.write_rows([table.failed_row(broadcast, to, error)
                            for chunk, done in zip(not_put, settled, strict=True)
                            for to in chunk.recipients if to not in done])

