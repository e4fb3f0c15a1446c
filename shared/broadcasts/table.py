"""Table `TwilioBroadcasts`: each broadcast's rows, and the state of each recipient.

Partition = broadcast id; row `broadcast` (kind, text, media, from, how many were accepted and
refused, the tag secret, when); rows `r-<E.164>`: written when a recipient settles (State sent,
failed, or refused: opted out by the time their turn came; Sid, Error); rows `r-~<digest>` for
refused entries (State refused, the entry as given, at most MAX_REFUSED_ROWS of them: the row
counts them all). A queued recipient has no row (its chunk message holds it): the counts derive
`queued` from the accepted total, so they are whole from the first moment, and the page lists
recipients as they settle.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from shared.broadcasts.model import BROADCAST_ROW, STATES, BadRow, Broadcast, Envelope, Task, shown
from shared.common import logs, redact
from shared.records import batches, storage

logger = logs.get_logger(__name__)

TABLE = "TwilioBroadcasts"

RECIPIENT_PREFIX = "r-"

# Refused entries are whatever the caller sent: their rows are keyed by a digest, never by the
# text itself (Table Storage refuses / \\ # ? and control characters in keys).
REFUSED_PREFIX = "r-~"

# Refused entries kept as rows (ten transactions); the rest are counted and answered only.
MAX_REFUSED_ROWS = 1_000


async def open_message(
    envelope: Envelope, function: str, message_id: str
) -> tuple[Broadcast | None, list[str]]:
    """The broadcast a message names and its recipients; (None, []) when no such broadcast is
    recorded, and (broadcast, []) when any recipient's tag does not verify (a message made or
    altered by hand: none of it is trusted). One ERROR line for each. Raises
    StorageUnavailable (the queue tries the message again)."""
    row = await storage.within_deadline(read_row(envelope.broadcast))
    if row is None:
        logger.error("%s message=%s outcome=dropped reason=no broadcast %s", function,
                     message_id, envelope.broadcast)
        return None, []
    try:
        broadcast = Broadcast.from_row(row)
    except BadRow as error:
        logger.error("%s message=%s id=%s outcome=dropped reason=the broadcast's row cannot be "
                     "trusted: %s (its recipients stay as they are; GET the broadcast to see "
                     "them)", function, message_id, envelope.broadcast, error)
        return None, []
    verified = broadcast.verified(envelope.tagged)
    if len(verified) < len(envelope.tagged):
        logger.error(
            "%s message=%s id=%s outcome=dropped reason=%d of %d recipients not queued by this "
            "broadcast (a message made or altered by hand: none of it is sent)", function,
            message_id, broadcast.id, len(envelope.tagged) - len(verified), len(envelope.tagged),
        )
        return broadcast, []
    return broadcast, verified


async def read_row(broadcast_id: str) -> dict[str, Any] | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return dict(
            await storage.on_table(TABLE, lambda t: t.get_entity(broadcast_id, BROADCAST_ROW))
        )
    except ResourceNotFoundError:
        return None


def refused_row(broadcast: str, entry: str, error: str) -> dict[str, Any]:
    digest = hashlib.sha256(entry.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return {"PartitionKey": broadcast, "RowKey": REFUSED_PREFIX + digest, "State": "refused",
            "To": shown(entry), "Error": error}


def failed_row(broadcast: str, to: str, error: str) -> dict[str, Any]:
    return {"PartitionKey": broadcast, "RowKey": RECIPIENT_PREFIX + to, "State": "failed",
            "Error": error}


async def write_rows(rows: list[dict[str, Any]], merge: bool = False) -> None:
    """Upsert (`merge`: insert or merge) rows of broadcasts, a transaction for each partition's
    hundred."""
    await batches.upsert(TABLE, rows, merge)


SETTLED = ("sent", "failed", "refused")


async def settled(broadcast: str, recipients: list[str]) -> dict[str, str]:
    """Which of these recipients have settled already, and how (sent, failed, refused): one
    query over the range of their rows (a chunk's recipients are one range: model.chunks),
    with the rest of the range filtered out here. Raises StorageUnavailable."""
    if not recipients:
        return {}
    wanted = set(recipients)

    async def query(t: Any) -> dict[str, str]:
        rows = t.query_entities(
            "PartitionKey eq @id and RowKey ge @first and RowKey le @last",
            parameters={"id": broadcast, "first": RECIPIENT_PREFIX + min(recipients),
                        "last": RECIPIENT_PREFIX + max(recipients)},
            select=["RowKey", "State"])
        found = {}
        async for row in rows:
            to = row["RowKey"][len(RECIPIENT_PREFIX):]
            if to in wanted and row.get("State") in SETTLED:
                found[to] = row["State"]
        return found

    return await storage.within_deadline(storage.on_table(TABLE, query))


async def deliver(broadcast: str, to: str, outcome: str) -> bool:
    """A sent recipient's final status (shared.broadcasts.delivery): merged into its row; False
    when the broadcast has no such recipient (every one has a row from the start: a callback
    naming another number made one, a recipient that was never sent: an attack run's)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables import UpdateMode

    row = {"PartitionKey": broadcast, "RowKey": RECIPIENT_PREFIX + to, "Delivery": outcome}
    try:
        await storage.on_table(TABLE, lambda t: t.update_entity(row, mode=UpdateMode.MERGE))
    except ResourceNotFoundError:
        return False
    return True


# The broadcasts, newest first: rows in the records' index table (shared.records.store), keyed
# as its records are, so GET /api/broadcasts pages through them without a scan.
INDEX_PARTITION = "broadcast"


async def index(broadcast: str, created_at: str) -> None:
    """File a broadcast under its creation time (the same row on every retry of its start)."""
    import datetime

    from shared.records import store

    try:
        created = datetime.datetime.fromisoformat(created_at)
    except ValueError:
        created = store._now()
    row = {"PartitionKey": INDEX_PARTITION, "RowKey": store.index_key(created, broadcast),
           "Id": broadcast}
    await storage.on_table(store.INDEX_TABLE, lambda t: t.upsert_entity(row))


async def recent(limit: int, token: dict[str, str] | None
                 ) -> tuple[list[dict[str, Any]], str | None]:
    """The newest broadcasts, one page of `limit`, each with its counts; and the next token."""
    from shared.records import store

    rows, next_token = await store.index_page(INDEX_PARTITION, limit, token)

    async def summary(broadcast: str) -> dict[str, Any] | None:
        found = await read_row(broadcast)
        if found is None:
            return None
        totals, fared = await storage.on_table(TABLE, lambda t: _counts(t, broadcast, found))
        return {"id": broadcast, "kind": found.get("Kind"), "created_at": found.get("CreatedAt"),
                "accepted": int(found.get("Accepted") or 0), "counts": totals, "delivery": fared}

    found = await asyncio.gather(*(summary(r["Id"]) for r in rows))
    return [s for s in found if s is not None], next_token


async def _counts(
    t: Any, broadcast: str, found: dict[str, Any]
) -> tuple[dict[str, int], dict[str, int]]:
    """Recipients by state over the whole broadcast (one partition query of their states), and
    how the sent ones fared (`delivery`: delivered, undelivered; the rest are still on their
    way)."""
    totals = dict.fromkeys(STATES, 0)
    fared = {"delivered": 0, "undelivered": 0}
    rows = t.query_entities(
        "PartitionKey eq @id and RowKey ge 'r-' and RowKey lt 'r-~'",
        parameters={"id": broadcast},
        select=["State", "Delivery"],
    )
    async for row in rows:
        state = row.get("State")
        if state in ("sent", "failed", "refused"):  # refused when their turn came: opted out
            totals[state] += 1
        if state == "sent" and row.get("Delivery") in fared:
            fared[row["Delivery"]] += 1
    # Every accepted recipient not yet settled is queued, listed (taken up) or not.
    settled = totals["sent"] + totals["failed"] + totals["refused"]
    totals["queued"] = max(0, int(found.get("Accepted") or 0) - settled)
    # And those refused on the way in (rows are kept for the first 1,000).
    totals["refused"] += int(found.get("Refused") or 0)
    return totals, fared


async def status(broadcast: str, limit: int, token: dict[str, str] | None) -> dict[str, Any] | None:
    """Counts by state over the whole broadcast, and one page of its recipients."""
    from shared.records import store

    found = await read_row(broadcast)
    if found is None:
        return None

    async def page(t: Any) -> tuple[list[dict[str, Any]], object]:
        pages = t.query_entities(
            "PartitionKey eq @id and RowKey ge 'r-' and RowKey lt 'r.'",
            parameters={"id": broadcast},
            results_per_page=limit,
        ).by_page(continuation_token=token)
        async for rows in pages:
            return [dict(r) async for r in rows], pages.continuation_token
        return [], None

    # Counting reads the whole partition: once, on the first page, not again on every page.
    counted = (await storage.on_table(TABLE, lambda t: _counts(t, broadcast, found))
               if token is None else None)
    rows, next_token = await storage.on_table(TABLE, page)
    kind = "call" if found.get("Kind") == "call" else "message"

    async def recipient(row: dict[str, Any]) -> dict[str, Any]:
        item = {
            "to": row["To"] if "To" in row else row["RowKey"][len(RECIPIENT_PREFIX) :],
            "state": row.get("State") or "queued",
            "sid": row.get("Sid"),
            "error": row.get("Error"),
            "delivery": None,
        }
        if row.get("Sid"):
            record = await store.read(kind, row["Sid"])
            item["delivery"] = record["status"] if record else None
        return item

    items = await asyncio.gather(*(recipient(r) for r in rows))
    return {
        "id": broadcast,
        "kind": found.get("Kind"),
        "created_at": found.get("CreatedAt"),
        # Counted on the first page only (each count reads the whole partition).
        "counts": counted[0] if counted else None,
        "delivery": counted[1] if counted else None,
        "recipients": list(items),
        "next": store.encode_token(next_token),
    }


async def give_up(task: Task, reason: str) -> bool:
    """Mark a recipient failed after its last try, unless it settled after all (sent, failed or
    refused: left as it is, with its own error); True when it was marked failed now. A poison
    message delivered again finds the ones it marked settled, and counts them no more."""
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
    )
    from azure.data.tables import UpdateMode

    async def settle(t: Any) -> bool:
        try:
            row = await t.get_entity(task.broadcast, RECIPIENT_PREFIX + task.to)
        except ResourceNotFoundError:
            row = None
        if row is not None and row.get("State") in SETTLED:
            return False
        failed = {
            "PartitionKey": task.broadcast,
            "RowKey": RECIPIENT_PREFIX + task.to,
            "State": "failed",
            "Error": reason,
        }
        if row is None:
            try:
                await t.create_entity(failed)
            except ResourceExistsError:
                return await settle(t)  # written meanwhile (a deferred copy sent it?): look again
            return True
        try:
            await t.update_entity(
                failed,
                mode=UpdateMode.MERGE,
                etag=row.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            return await settle(t)  # it changed under us (sent at the last moment?): look again
        return True

    marked: bool = await storage.within_deadline(storage.on_table(TABLE, settle))
    if marked:
        logger.warning(
            "broadcast_poison id=%s to=%s outcome=failed reason=%s",
            task.broadcast,
            redact.phone_number(task.to),
            reason,
        )
    return marked
