"""Broadcasts: one text (or call) to many numbers, through an Azure Storage Queue.

`POST /api/broadcasts` checks every number up front with the same policy as a single send
(refused ones are answered and never queued; duplicates are sent once), records the broadcast,
and puts its accepted recipients on the `broadcast-sends` queue in chunks of up to 100: one
message per chunk, so accepting 10,000 recipients is about a hundred queue writes, not 10,000
(the Queue service has no batch put, and one put is one HTTP request; every message is also a
get and a delete later, each billed). `broadcast_send` sends a chunk's recipients one after the
other through the same code as send_sms and make_call, each under the idempotency key
(broadcast id, recipient), so a chunk the queue delivers twice still sends each once; after a
time budget it puts the rest back as a smaller chunk. A recipient that must wait (Twilio's 429,
an in-flight key, an unknown outcome) gets its own message, deferred (see
shared.broadcast_delivery); a refusal is recorded as failed with Twilio's code. A message that
exhausts maxDequeueCount lands on `broadcast-sends-poison`, where `broadcast_poison` records its
recipient(s) as failed.

Table `TwilioBroadcasts`: partition = broadcast id; row `broadcast` (kind, text, from, how many
were accepted and refused, when); rows `r-<E.164>`: written when a recipient settles (State
sent | failed, Sid, Error), or at once for a refused number (State refused). A queued recipient
has no row (its chunk message holds it): the counts derive `queued` from the accepted total, so
they are whole from the first moment, and the page lists recipients as they settle. Writing a
row per recipient up front, or per chunk as it is taken up, would double the table writes of a
broadcast for a list of numbers the caller already has.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

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
CHUNK_SIZE = 100  # recipients a chunk message carries: one row transaction when taken up
# A queue message is at most 64 KiB, base64 text by the host's default messageEncoding: 48 KiB of
# JSON. A chunk of 100 numbers with the longest text the policy lets through (1,600 characters
# of SMS body) stays far under it; a test holds it to that.
MAX_MESSAGE_BYTES = 48 * 1024
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
    deferrals: int = 0  # times broadcast_send put it back on the queue to try later

    def _fields(self) -> dict[str, Any]:
        return {
            "broadcast": self.broadcast,
            "kind": self.kind,
            "to": self.to,
            "from": self.from_,
            "text": self.text,
        }

    def to_json(self) -> str:
        fields = self._fields()
        if self.deferrals:
            fields["deferrals"] = self.deferrals
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: Any) -> Task:
        if not isinstance(data, dict) or data.get("kind") not in KINDS or "to" not in data:
            raise ValueError("not a broadcast task")
        deferrals = data.get("deferrals", 0)
        return cls(
            broadcast=str(data["broadcast"]),
            kind=data["kind"],
            to=str(data["to"]),
            from_=data.get("from"),
            text=data.get("text"),
            deferrals=deferrals if isinstance(deferrals, int) else 0,
        )

    @property
    def idempotency_key(self) -> str:
        return f"{self.broadcast}:{self.to}"

    @property
    def fingerprint(self) -> str:
        """The same for every copy of this recipient's message: deferred, or its chunk twice."""
        encoded = json.dumps(self._fields(), separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(encoded.encode()).hexdigest()

    def deferred(self) -> Task:
        return replace(self, deferrals=self.deferrals + 1)


@dataclass(frozen=True)
class Chunk:
    """One queue message that stands for up to CHUNK_SIZE recipients of one broadcast."""

    broadcast: str
    kind: str
    recipients: tuple[str, ...]
    from_: str | None
    text: str | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "broadcast": self.broadcast,
                "kind": self.kind,
                "recipients": list(self.recipients),
                "from": self.from_,
                "text": self.text,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def rest(self, recipients: list[str]) -> Chunk:
        """What is left of the chunk: the same broadcast and text, these recipients."""
        return replace(self, recipients=tuple(recipients))

    def tasks(self) -> list[Task]:
        return [
            Task(self.broadcast, self.kind, to, self.from_, self.text) for to in self.recipients
        ]


def message(data: Any) -> Task | Chunk:
    """A `broadcast-sends` message's JSON: one recipient's task, or a chunk."""
    if isinstance(data, dict) and isinstance(data.get("recipients"), list):
        if data.get("kind") not in KINDS or not all(isinstance(n, str) for n in data["recipients"]):
            raise ValueError("not a broadcast chunk")
        return Chunk(
            broadcast=str(data["broadcast"]),
            kind=data["kind"],
            recipients=tuple(data["recipients"]),
            from_=data.get("from"),
            text=data.get("text"),
        )
    return Task.from_json(data)


def chunks(tasks: list[Task]) -> list[Chunk]:
    """The accepted tasks in chunks of CHUNK_SIZE (one broadcast: the same kind, sender, text)."""
    if not tasks:
        return []
    first = tasks[0]
    return [
        Chunk(first.broadcast, first.kind, tuple(t.to for t in tasks[i : i + CHUNK_SIZE]),
              first.from_, first.text)
        for i in range(0, len(tasks), CHUNK_SIZE)
    ]


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
    """Upsert rows of one partition, 100 a transaction, a few transactions at a time."""
    batches = [rows[i : i + TRANSACTION_SIZE] for i in range(0, len(rows), TRANSACTION_SIZE)]
    limit = asyncio.Semaphore(8)

    async def write(batch: list[dict[str, Any]]) -> None:
        async with limit:
            operations = [("upsert", row) for row in batch]
            await storage.on_table(TABLE, lambda t: t.submit_transaction(operations))

    await storage.within_deadline(asyncio.gather(*(write(batch) for batch in batches)))


M = TypeVar("M", Task, Chunk)


async def _enqueue(messages: list[M]) -> list[M]:
    """Put each message on the queue; the ones that could not be put (storage)."""
    client = await storage.queue(QUEUE)
    limit = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def put(one: M) -> None:
        async with limit:
            await storage.bounded(client.send_message(one.to_json()))

    results = await asyncio.gather(*(put(m) for m in messages), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, storage.StorageUnavailable):
            raise result
    return [m for m, r in zip(messages, results, strict=True) if isinstance(r, BaseException)]


async def accept(
    broadcast: str,
    kind: str,
    text: str | None,
    from_: str | None,
    accepted: list[Task],
    refused: list[dict[str, str]],
) -> int:
    """Record the broadcast and its refused numbers, then queue the accepted ones in chunks;
    returns how many were queued (all of them unless storage failed part way: the rest are
    recorded as failed)."""
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
    await _write_rows(
        _rows(broadcast, ((r["to"], {"State": "refused", "Error": r["error"]}) for r in refused))
    )
    missed = [to for chunk in await _enqueue(chunks(accepted)) for to in chunk.recipients]
    if missed:
        logger.error(
            "broadcasts id=%s outcome=partly-queued missed=%d of=%d",
            broadcast,
            len(missed),
            len(accepted),
        )
        error = "could not be queued (storage unavailable): not sent"
        await _write_rows(
            _rows(broadcast, ((to, {"State": "failed", "Error": error}) for to in missed))
        )
    return len(accepted) - len(missed)


async def put_back(chunk: Chunk) -> None:
    """Queue what is left of a chunk, visible at once: the next invocation carries on."""
    if chunk.recipients and await _enqueue([chunk]):
        raise storage.StorageUnavailable("the rest of a chunk could not be queued")


async def defer(task: Task, after: float) -> None:
    """Put the task back on the queue, visible `after` seconds from now, counted as a deferral
    (the copy's dequeue count starts again: how a 429 or an in-flight key waits without using
    up the message's maxDequeueCount tries)."""
    client = await storage.queue(QUEUE)
    await storage.bounded(
        client.send_message(task.deferred().to_json(), visibility_timeout=max(0, round(after)))
    )


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
            state = row.get("State")
            if state in ("sent", "failed", "refused"):
                totals[state] += 1
        # Every accepted recipient not yet settled is queued, listed (taken up) or not.
        settled = totals["sent"] + totals["failed"]
        totals["queued"] = max(0, int(found.get("Accepted") or 0) - settled)
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

    # Counting reads the whole partition: once, on the first page, not again on every page.
    totals = await storage.on_table(TABLE, counts) if token is None else None
    rows, next_token = await storage.on_table(TABLE, page)
    kind = "call" if found.get("Kind") == "call" else "message"

    async def recipient(row: dict[str, Any]) -> dict[str, Any]:
        item = {
            "to": row["RowKey"][len(RECIPIENT_PREFIX) :],
            "state": row.get("State") or "queued",
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
