"""Broadcasts: one text (or call) to many numbers, through an Azure Storage Queue.

`POST /api/broadcasts` checks every entry up front with the same policy as a single send
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

What is sent comes from the broadcast's row, never from the queue message: a message names the
broadcast and its recipients, each with a tag (an HMAC made with a secret kept on that row), so
a message put on the queue by hand, or a real one altered, sends nothing and changes nothing.
Messages are JSON text (host.json's messageEncoding is none); anything that does not parse is
logged with its message id and dropped, never retried into the poison queue.

Table `TwilioBroadcasts`: partition = broadcast id; row `broadcast` (kind, text, media, from,
how many were accepted and refused, the tag secret, when); rows `r-<E.164>`: written when a
recipient settles (State sent | failed, Sid, Error); rows `r-~<digest>` for refused entries
(State refused, the entry as given, at most MAX_REFUSED_ROWS of them: the row counts them all).
A queued recipient has no row (its chunk message holds it): the counts derive `queued` from the
accepted total, so they are whole from the first moment, and the page lists recipients as they
settle.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TypeVar

from shared import logs, redact, storage
from shared.responses import Refusal

logger = logs.get_logger(__name__)

TABLE = "TwilioBroadcasts"
QUEUE = "broadcast-sends"
POISON_QUEUE = f"{QUEUE}-poison"
BROADCAST_ROW = "broadcast"
RECIPIENT_PREFIX = "r-"
# Refused entries are whatever the caller sent: their rows are keyed by a digest, never by the
# text itself (Table Storage refuses / \\ # ? and control characters in keys).
REFUSED_PREFIX = "r-~"
MAX_RECIPIENTS = 10_000
MAX_BODY_BYTES = 512 * 1024  # 10,000 numbers in JSON, with room
# The fields of each kind: send_sms's for texts, make_call's for calls (and kind).
FIELDS = {
    "sms": ("kind", "to", "body", "from", "media_url"),
    "call": ("kind", "to", "message", "from"),
}
ALL_FIELDS = tuple(dict.fromkeys(FIELDS["sms"] + FIELDS["call"]))
KINDS = ("sms", "call")
STATES = ("queued", "sent", "failed", "refused")
# A broadcast id: "BC", its UTC creation time (sortable), 16 hex digits (unguessable).
ID = re.compile(r"BC[0-9]{14}[0-9a-f]{16}")
# What the app queues as a recipient: an E.164 number (also a safe row key).
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# Tries of the poison queue's message before broadcast_poison stops retrying a storage failure
# and drops it with an ERROR (the poison queue has no poison queue of its own).
POISON_TRIES = 5
TRANSACTION_SIZE = 100  # Table Storage's limit on one entity group transaction
CHUNK_SIZE = 100  # recipients a chunk message carries: one row transaction when taken up
# A queue message is at most 64 KiB. A chunk of 100 numbers and their tags is a few KiB (the
# text is on the broadcast's row, not in the message); a test holds it under this.
MAX_MESSAGE_BYTES = 48 * 1024
ENQUEUE_CONCURRENCY = 32
# Refused entries kept as rows (ten transactions); the rest are counted and answered only.
MAX_REFUSED_ROWS = 1_000
# Characters of a refused entry kept and answered back (an entry may be any text).
MAX_ENTRY_SHOWN = 100
# Seconds the accepting request may spend queueing, then marking what did not make it: inside
# the host's 12 s functionTimeout, with time to answer.
QUEUE_BUDGET = 7.5
MARK_BUDGET = 2.5
ACCEPT_DEADLINE = QUEUE_BUDGET + MARK_BUDGET
TAG_LENGTH = 32  # hex digits of a recipient's tag (128 bits)


class BadMessage(ValueError):
    """A queue message that is not one this app put there; the reason is safe to log."""


@dataclass(frozen=True)
class Broadcast:
    """A broadcast's row: what is sent to every recipient, and the secret that tags them."""

    id: str
    kind: str
    text: str | None
    from_: str | None
    media_urls: tuple[str, ...]
    seal: str  # hex; never shown: only tags made with it are on the queue

    @classmethod
    def new(
        cls, broadcast_id: str, kind: str, text: str | None, from_: str | None,
        media_urls: tuple[str, ...] = (),
    ) -> Broadcast:
        return cls(broadcast_id, kind, text, from_, media_urls, secrets.token_hex(32))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Broadcast:
        return cls(
            id=str(row["PartitionKey"]),
            kind="call" if row.get("Kind") == "call" else "sms",
            text=row.get("Text") or None,
            from_=row.get("From") or None,
            media_urls=tuple(json.loads(row.get("MediaUrls") or "[]")),
            seal=str(row.get("Seal") or ""),
        )

    def row(self, accepted: int, refused: int) -> dict[str, Any]:
        return {
            "PartitionKey": self.id,
            "RowKey": BROADCAST_ROW,
            "Kind": self.kind,
            "Text": self.text or "",
            "From": self.from_ or "",
            "MediaUrls": json.dumps(list(self.media_urls)),
            "Accepted": accepted,
            "Refused": refused,
            "Seal": self.seal,
            "CreatedAt": datetime.datetime.now(datetime.UTC).isoformat(),
        }

    def tag(self, to: str) -> str:
        """The recipient's tag: proof that this broadcast queued that number."""
        mac = hmac.new(bytes.fromhex(self.seal), f"{self.id}\n{to}".encode(), hashlib.sha256)
        return mac.hexdigest()[:TAG_LENGTH]

    def verified(self, tagged: tuple[tuple[str, str], ...]) -> list[str]:
        """The recipients whose tags this broadcast made (none without a secret)."""
        if not self.seal:
            return []
        return [to for to, tag in tagged if hmac.compare_digest(self.tag(to), tag)]

    def task(self, to: str, deferrals: int = 0) -> Task:
        return Task(self.id, self.kind, to, self.from_, self.text, self.media_urls,
                    self.tag(to), deferrals)

    def chunk(self, recipients: list[str] | tuple[str, ...]) -> Chunk:
        return Chunk(self, tuple(recipients))


@dataclass(frozen=True)
class Task:
    """One recipient of one broadcast, with what to send them (from the broadcast's row)."""

    broadcast: str
    kind: str
    to: str
    from_: str | None
    text: str | None
    media_urls: tuple[str, ...]
    tag: str
    deferrals: int = 0  # times broadcast_send put it back on the queue to try later

    def to_json(self) -> str:
        fields: dict[str, Any] = {"broadcast": self.broadcast, "to": self.to, "tag": self.tag}
        if self.deferrals:
            fields["deferrals"] = self.deferrals
        return json.dumps(fields, separators=(",", ":"))

    @property
    def idempotency_key(self) -> str:
        return f"{self.broadcast}:{self.to}"

    @property
    def fingerprint(self) -> str:
        """The same for every copy of this recipient's message: deferred, or its chunk twice."""
        fields = [self.broadcast, self.kind, self.to, self.from_, self.text, *self.media_urls]
        encoded = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(encoded.encode()).hexdigest()

    def deferred(self) -> Task:
        return replace(self, deferrals=self.deferrals + 1)


@dataclass(frozen=True)
class Chunk:
    """One queue message that stands for up to CHUNK_SIZE recipients of one broadcast."""

    broadcast: Broadcast
    recipients: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "broadcast": self.broadcast.id,
                "recipients": list(self.recipients),
                "tags": [self.broadcast.tag(to) for to in self.recipients],
            },
            separators=(",", ":"),
        )

    def rest(self, recipients: list[str]) -> Chunk:
        """What is left of the chunk: the same broadcast, these recipients."""
        return replace(self, recipients=tuple(recipients))

    def tasks(self) -> list[Task]:
        return [self.broadcast.task(to) for to in self.recipients]


def chunks(broadcast: Broadcast, recipients: list[str]) -> list[Chunk]:
    """The accepted recipients in chunks of CHUNK_SIZE."""
    return [
        broadcast.chunk(recipients[i : i + CHUNK_SIZE])
        for i in range(0, len(recipients), CHUNK_SIZE)
    ]


class Envelope(NamedTuple):
    """A `broadcast-sends` message as read, before its broadcast's row vouches for it."""

    broadcast: str
    tagged: tuple[tuple[str, str], ...]  # (recipient, tag)
    deferrals: int
    is_chunk: bool


def read_message(body: bytes) -> Envelope:
    """A queue message's content: JSON text (or base64 of it, as messages of an earlier
    version of the app were put); raises BadMessage saying what is wrong."""
    text = body.strip()
    if not text.startswith(b"{"):
        try:
            text = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BadMessage("neither JSON nor base64") from None
    try:
        data = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadMessage("not JSON") from None
    if not isinstance(data, dict):
        raise BadMessage("not a JSON object")
    broadcast = data.get("broadcast")
    if not isinstance(broadcast, str) or not ID.fullmatch(broadcast):
        raise BadMessage("no broadcast id")
    deferrals = data.get("deferrals", 0)
    if type(deferrals) is not int or not 0 <= deferrals <= 10_000:
        raise BadMessage("'deferrals' is not a count")
    if "recipients" in data:
        recipients, tags = data.get("recipients"), data.get("tags")
        if (
            not isinstance(recipients, list)
            or not isinstance(tags, list)
            or not 0 < len(recipients) == len(tags) <= CHUNK_SIZE
            or not all(isinstance(v, str) for v in recipients + tags)
        ):
            raise BadMessage("'recipients' and 'tags' are not lists of strings of one length")
        tagged, is_chunk = tuple(zip(recipients, tags, strict=True)), True
    else:
        to, tag = data.get("to"), data.get("tag")
        if not isinstance(to, str) or not isinstance(tag, str):
            raise BadMessage("no 'to' and 'tag'")
        tagged, is_chunk = ((to, tag),), False
    if not all(E164.fullmatch(to) for to, _ in tagged):
        raise BadMessage("a recipient that is not an E.164 number")
    return Envelope(broadcast, tagged, deferrals, is_chunk)


async def open_message(
    envelope: Envelope, function: str, message_id: str
) -> tuple[Broadcast | None, list[str]]:
    """The broadcast a message names and its recipients; (None, []) when no such broadcast is
    recorded, and (broadcast, []) when any recipient's tag does not verify (a message made or
    altered by hand: none of it is trusted). One ERROR line for each. Raises
    StorageUnavailable (the queue tries the message again)."""
    row = await storage.within_deadline(_read_row(envelope.broadcast))
    if row is None:
        logger.error("%s message=%s outcome=dropped reason=no broadcast %s", function,
                     message_id, envelope.broadcast)
        return None, []
    broadcast = Broadcast.from_row(row)
    verified = broadcast.verified(envelope.tagged)
    if len(verified) < len(envelope.tagged):
        logger.error(
            "%s message=%s id=%s outcome=dropped reason=%d of %d recipients not queued by this "
            "broadcast (a message made or altered by hand: none of it is sent)", function,
            message_id, broadcast.id, len(envelope.tagged) - len(verified), len(envelope.tagged),
        )
        return broadcast, []
    return broadcast, verified


async def _read_row(broadcast_id: str) -> dict[str, Any] | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return dict(
            await storage.on_table(TABLE, lambda t: t.get_entity(broadcast_id, BROADCAST_ROW))
        )
    except ResourceNotFoundError:
        return None


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


def shown(entry: str) -> str:
    """A refused entry as kept and answered: at most MAX_ENTRY_SHOWN characters."""
    return entry if len(entry) <= MAX_ENTRY_SHOWN else entry[:MAX_ENTRY_SHOWN] + "…"


def _refused_row(broadcast: str, entry: str, error: str) -> dict[str, Any]:
    digest = hashlib.sha256(entry.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return {"PartitionKey": broadcast, "RowKey": REFUSED_PREFIX + digest, "State": "refused",
            "To": shown(entry), "Error": error}


def _failed_row(broadcast: str, to: str, error: str) -> dict[str, Any]:
    return {"PartitionKey": broadcast, "RowKey": RECIPIENT_PREFIX + to, "State": "failed",
            "Error": error}


async def _write_rows(rows: list[dict[str, Any]]) -> None:
    """Upsert rows of one partition, 100 a transaction, a few transactions at a time."""
    batches = [rows[i : i + TRANSACTION_SIZE] for i in range(0, len(rows), TRANSACTION_SIZE)]
    limit = asyncio.Semaphore(8)

    async def write(batch: list[dict[str, Any]]) -> None:
        async with limit:
            operations = [("upsert", row) for row in batch]
            await storage.on_table(TABLE, lambda t: t.submit_transaction(operations))

    await asyncio.gather(*(write(batch) for batch in batches))


M = TypeVar("M", Task, Chunk)


async def _enqueue(messages: list[M], budget: float | None = None) -> list[M]:
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


class Accepted(NamedTuple):
    """What the accepting request did: the broadcast (an earlier attempt's, for a retried
    Idempotency-Key) and how many recipients were queued and could not be."""

    broadcast: Broadcast
    queued: int
    missed: int
    marked: bool  # the missed ones are recorded as failed


async def accept(
    broadcast: Broadcast, accepted: list[str], refused: list[dict[str, str]]
) -> Accepted:
    """Record the refused entries and the broadcast, then queue the accepted recipients in
    chunks. Raises StorageUnavailable only while nothing is queued (trying again is then safe);
    once queueing has begun, what could not be queued in time is recorded as failed and
    counted in the answer instead.

    A broadcast whose row exists already (a retried Idempotency-Key whose first attempt died
    part way) keeps its row and secret, and is queued again: each recipient's own key makes
    sure that none is texted or called twice."""
    from azure.core.exceptions import ResourceExistsError

    await storage.within_deadline(
        _write_rows(
            [_refused_row(broadcast.id, r["to"], r["error"]) for r in refused[:MAX_REFUSED_ROWS]]
        )
    )
    row = broadcast.row(len(accepted), len(refused))
    try:
        await storage.within_deadline(storage.on_table(TABLE, lambda t: t.create_entity(row)))
    except ResourceExistsError:
        existing = await storage.within_deadline(_read_row(broadcast.id))
        if existing is None:
            raise storage.StorageUnavailable("the broadcast's row vanished") from None
        broadcast = Broadcast.from_row(existing)
    missed = [
        to
        for chunk in await _enqueue(chunks(broadcast, accepted), QUEUE_BUDGET)
        for to in chunk.recipients
    ]
    marked = True
    if missed:
        logger.error(
            "broadcasts id=%s outcome=partly-queued missed=%d of=%d",
            broadcast.id, len(missed), len(accepted),
        )
        error = "could not be queued (storage unavailable or too slow): not sent"
        try:
            await asyncio.wait_for(
                _write_rows([_failed_row(broadcast.id, to, error) for to in missed]), MARK_BUDGET
            )
        except (TimeoutError, storage.StorageUnavailable) as failure:
            marked = False
            logger.error("broadcasts id=%s outcome=not-marked missed=%d reason=%s",
                         broadcast.id, len(missed), failure or "took too long")
    return Accepted(broadcast, len(accepted) - len(missed), len(missed), marked)


async def put_back(chunk: Chunk) -> None:
    """Queue what is left of a chunk, visible at once: the next invocation carries on."""
    if chunk.recipients and await _enqueue([chunk]):
        raise storage.StorageUnavailable("the rest of a chunk could not be queued")


async def defer(task: Task, after: float) -> None:
    """Put the task back on the queue, visible `after` seconds from now, counted as a deferral
    (the copy's dequeue count starts again: how a 429 or an in-flight key waits without using
    up the message's maxDequeueCount tries)."""
    copy, delay = task.deferred().to_json(), max(0, round(after))
    await storage.on_queue(QUEUE, lambda q: q.send_message(copy, visibility_timeout=delay))


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

    found = await _read_row(broadcast)
    if found is None:
        return None

    async def counts(t: Any) -> dict[str, int]:
        totals = dict.fromkeys(STATES, 0)
        rows = t.query_entities(
            "PartitionKey eq @id and RowKey ge 'r-' and RowKey lt 'r-~'",
            parameters={"id": broadcast},
            select=["State"],
        )
        async for row in rows:
            state = row.get("State")
            if state in ("sent", "failed"):
                totals[state] += 1
        # Every accepted recipient not yet settled is queued, listed (taken up) or not.
        settled = totals["sent"] + totals["failed"]
        totals["queued"] = max(0, int(found.get("Accepted") or 0) - settled)
        totals["refused"] = int(found.get("Refused") or 0)  # rows are kept for the first 1,000
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
            "to": row["To"] if "To" in row else row["RowKey"][len(RECIPIENT_PREFIX) :],
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


async def poisoned(message_id: str, body: bytes, dequeue_count: int) -> None:
    """broadcast_poison: record the recipients of a message that exhausted its tries as failed
    (unless sent). A message that is not one of ours is logged and dropped; storage failing
    raises, for the poison queue to deliver it again."""
    try:
        envelope = read_message(body)
    except BadMessage as error:
        logger.error("broadcast_poison message=%s outcome=dropped reason=%s", message_id, error)
        return
    try:
        broadcast, verified = await open_message(envelope, "broadcast_poison", message_id)
        if broadcast is None:
            return
        reason = "its queue message failed every try"
        await asyncio.gather(*(give_up(broadcast.task(to), reason) for to in verified))
    except storage.StorageUnavailable as error:
        # Refused (it never will be taken), or still failing after POISON_TRIES: this queue has
        # no poison queue of its own, so retrying more would loop until the message expires.
        if isinstance(error, storage.StorageRefused) or dequeue_count >= POISON_TRIES:
            logger.error(
                "broadcast_poison message=%s id=%s outcome=abandoned tries=%d reason=%s "
                "(its recipients stay as they were; GET the broadcast to see them)",
                message_id, envelope.broadcast, dequeue_count, error,
            )
            return
        raise
