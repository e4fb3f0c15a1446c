"""Broadcasts: one text (or call) to many numbers, through an Azure Storage Queue.

`POST /api/broadcasts` checks every number up front with the same policy as a single send
(refused ones are answered and never queued; duplicates are sent once), records the broadcast
and one row per recipient in Table Storage (batched, 100 rows a transaction), and puts one
message per accepted recipient on the `broadcast-sends` queue. `broadcast_send`, a
queue-triggered function, sends each through the same code as send_sms and make_call, under the
idempotency key (broadcast id, recipient): a message the queue delivers twice still sends once.
Twilio's 429 or 503, an in-flight key or an unknown outcome raise, so the queue delivers the
message again after host.json's visibility timeout; a refusal is recorded as failed with
Twilio's code. A message that exhausts maxDequeueCount lands on `broadcast-sends-poison`, where
`broadcast_poison` records the recipient as failed.

Table `TwilioBroadcasts`: partition = broadcast id; row `broadcast` (kind, text, from, counts
at creation, when); rows `r-<E.164>` (State queued | sent | failed | refused, Sid, Error).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared import logs, redact, storage
from shared.responses import Refusal

logger = logs.get_logger(__name__)

TABLE = "TwilioBroadcasts"
QUEUE = "broadcast-sends"
POISON_QUEUE = f"{QUEUE}-poison"
BROADCAST_ROW = "broadcast"
RECIPIENT_PREFIX = "r-"
MAX_RECIPIENTS = 10_000
MAX_BODY_BYTES = 512 * 1024  # 10,000 numbers in JSON, with room
FIELDS = ("kind", "to", "body", "message", "from")
KINDS = ("sms", "call")
STATES = ("queued", "sent", "failed", "refused")
TRANSACTION_SIZE = 100  # Table Storage's limit on one entity group transaction
ENQUEUE_CONCURRENCY = 32
# The whole of a broadcast's writes: inside the host's 12 s functionTimeout.
ACCEPT_DEADLINE = 10.0


@dataclass(frozen=True)
class Task:
    """One queue message: one recipient of one broadcast."""

    broadcast: str
    kind: str
    to: str
    from_: str | None
    text: str | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "broadcast": self.broadcast,
                "kind": self.kind,
                "to": self.to,
                "from": self.from_,
                "text": self.text,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, data: Any) -> Task:
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            raise ValueError("not a broadcast task")
        return cls(
            broadcast=str(data["broadcast"]),
            kind=data["kind"],
            to=str(data["to"]),
            from_=data.get("from"),
            text=data.get("text"),
        )

    @property
    def idempotency_key(self) -> str:
        return f"{self.broadcast}:{self.to}"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def new_id() -> str:
    """Sortable by creation (a UTC timestamp first), unguessable after it."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
    return f"BC{stamp}{secrets.token_hex(8)}"


def recipients(raw: object) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise Refusal(400, "'to' must be a list of 1 to 10,000 E.164 numbers.")
    if len(raw) > MAX_RECIPIENTS:
        raise Refusal(400, f"'to' lists {len(raw):,} numbers: a broadcast takes at most 10,000.")
    if not all(isinstance(n, str) for n in raw):
        raise Refusal(400, "'to' must be a list of strings.")
    return list(raw)


def _rows(broadcast: str, entries: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"PartitionKey": broadcast, "RowKey": RECIPIENT_PREFIX + to, **f} for to, f in entries]


async def _write_rows(rows: list[dict[str, Any]]) -> None:
    """Insert rows of one partition, 100 a transaction, a few transactions at a time."""
    chunks = [rows[i : i + TRANSACTION_SIZE] for i in range(0, len(rows), TRANSACTION_SIZE)]
    limit = asyncio.Semaphore(8)

    async def write(chunk: list[dict[str, Any]]) -> None:
        async with limit:
            operations = [("upsert", row) for row in chunk]
            await storage.on_table(TABLE, lambda t: t.submit_transaction(operations))

    await asyncio.gather(*(write(chunk) for chunk in chunks))


async def _enqueue(tasks: list[Task]) -> list[Task]:
    """Put one message per task on the queue; the tasks that could not be put (storage)."""
    client = await storage.queue(QUEUE)
    limit = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def put(task: Task) -> None:
        async with limit:
            await storage.bounded(client.send_message(task.to_json()))

    results = await asyncio.gather(*(put(t) for t in tasks), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, storage.StorageUnavailable):
            raise result
    return [t for t, r in zip(tasks, results, strict=True) if isinstance(r, BaseException)]


async def accept(
    broadcast: str,
    kind: str,
    text: str | None,
    from_: str | None,
    accepted: list[Task],
    refused: list[dict[str, str]],
) -> int:
    """Record the broadcast and its recipients, then queue the accepted ones; returns how many
    were queued (all of them unless storage failed part way: the rest are marked failed)."""
    header = {
        "PartitionKey": broadcast,
        "RowKey": BROADCAST_ROW,
        "Kind": kind,
        "Text": text or "",
        "From": from_ or "",
        "Accepted": len(accepted),
        "Refused": len(refused),
        "CreatedAt": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    await storage.on_table(TABLE, lambda t: t.create_entity(header))
    rows = _rows(broadcast, ((t.to, {"State": "queued"}) for t in accepted))
    rows += _rows(
        broadcast, ((r["to"], {"State": "refused", "Error": r["error"]}) for r in refused)
    )
    await _write_rows(rows)
    missed = await _enqueue(accepted)
    if missed:
        logger.error(
            "broadcasts id=%s outcome=partly-queued missed=%d of=%d",
            broadcast,
            len(missed),
            len(accepted),
        )
        error = "could not be queued (storage unavailable): not sent"
        failed = _rows(broadcast, ((t.to, {"State": "failed", "Error": error}) for t in missed))
        await _write_rows(failed)
    return len(accepted) - len(missed)


async def mark(
    broadcast: str, to: str, state: str, sid: str | None = None, error: str | None = None
) -> None:
    """Move one recipient on (sent, failed); never back from sent to queued."""
    from azure.data.tables import UpdateMode

    row = {"PartitionKey": broadcast, "RowKey": RECIPIENT_PREFIX + to, "State": state}
    if sid:
        row["Sid"] = sid
    if error:
        row["Error"] = error
    await storage.within_deadline(
        storage.on_table(TABLE, lambda t: t.upsert_entity(row, mode=UpdateMode.MERGE))
    )
    logger.info("broadcast_send id=%s to=%s outcome=%s", broadcast, redact.phone_number(to), state)


async def status(broadcast: str, limit: int, token: dict[str, str] | None) -> dict[str, Any] | None:
    """Counts by state over the whole broadcast, and one page of its recipients."""
    from shared import records

    async def header(t: Any) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return dict(await t.get_entity(broadcast, BROADCAST_ROW))
        except ResourceNotFoundError:
            return None

    found = await storage.on_table(TABLE, header)
    if found is None:
        return None

    async def counts(t: Any) -> dict[str, int]:
        totals = dict.fromkeys(STATES, 0)
        rows = t.query_entities(
            "PartitionKey eq @id and RowKey ge 'r-' and RowKey lt 'r.'",
            parameters={"id": broadcast},
            select=["State"],
        )
        async for row in rows:
            totals[row.get("State", "queued")] = totals.get(row.get("State", "queued"), 0) + 1
        return totals

    async def page(t: Any) -> tuple[list[dict[str, Any]], object]:
        pages = t.query_entities(
            "PartitionKey eq @id and RowKey ge 'r-' and RowKey lt 'r.'",
            parameters={"id": broadcast},
            results_per_page=limit,
        ).by_page(continuation_token=token)
        async for rows in pages:
            return [dict(r) async for r in rows], pages.continuation_token
        return [], None

    totals = await storage.on_table(TABLE, counts)
    rows, next_token = await storage.on_table(TABLE, page)
    kind = "call" if found.get("Kind") == "call" else "message"

    async def recipient(row: dict[str, Any]) -> dict[str, Any]:
        item = {
            "to": row["RowKey"][len(RECIPIENT_PREFIX) :],
            "state": row.get("State"),
            "sid": row.get("Sid"),
            "error": row.get("Error"),
            "delivery": None,
        }
        if row.get("Sid"):
            record = await records.read(kind, row["Sid"])
            item["delivery"] = record["status"] if record else None
        return item

    items = await asyncio.gather(*(recipient(r) for r in rows))
    return {
        "id": broadcast,
        "kind": found.get("Kind"),
        "created_at": found.get("CreatedAt"),
        "counts": totals,
        "recipients": list(items),
        "next": records.encode_token(next_token),
    }


async def give_up(task: Task, reason: str) -> None:
    """Mark a recipient failed after its last try, unless it was sent after all."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
    from azure.data.tables import UpdateMode

    async def settle(t: Any) -> None:
        try:
            row = await t.get_entity(task.broadcast, RECIPIENT_PREFIX + task.to)
        except ResourceNotFoundError:
            row = None
        if row is not None and row.get("State") == "sent":
            return
        failed = {
            "PartitionKey": task.broadcast,
            "RowKey": RECIPIENT_PREFIX + task.to,
            "State": "failed",
            "Error": reason,
        }
        if row is None:
            await t.upsert_entity(failed)
            return
        try:
            await t.update_entity(
                failed,
                mode=UpdateMode.MERGE,
                etag=row.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            await settle(t)  # it changed under us (sent at the last moment?): look again

    await storage.within_deadline(storage.on_table(TABLE, settle))
    logger.warning(
        "broadcast_poison id=%s to=%s outcome=failed reason=%s",
        task.broadcast,
        redact.phone_number(task.to),
        reason,
    )
