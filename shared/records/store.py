"""The durable record of every call and message: what was created, and what Twilio said since.

Two tables, both keyed so that no read scans:
- `TwilioRecords`: one partition per SID. Row `record` holds what was created (kind, to, from,
  the created status, when, the text); one row per status event, `event-<key>`, where the key is
  the event's identity (a call's SequenceNumber; a message's status, error code and delivery
  date). Reading a record and its events is one partition query. The same event delivered twice
  lands on the same row key and is stored once.
- `TwilioRecordIndex`: partition `call` or `message`, row key = (a far-future instant minus the
  creation time, in milliseconds, zero-padded) + SID. Table Storage returns rows in row-key
  order, so a partition query reads the newest first, a page at a time, with the service's own
  continuation token.

The current status is not stored but computed on reading: the furthest in the lifecycle among
the created status and every event, so callbacks arriving out of order (ringing after
completed) or twice never move a record backwards, and no read-modify-write races exist between
concurrent callbacks.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from shared.common.text import is_unicode, small_count
from shared.records import storage

RECORDS_TABLE = "TwilioRecords"
INDEX_TABLE = "TwilioRecordIndex"
RECORD_ROW = "record"
EVENT_PREFIX = "event-"
# A call's recordings (shared.records.recordings): row `recording-<RecordingSid>`.
RECORDING_PREFIX = "recording-"
# Who created a SID, on its record row (`Owner`): the Idempotency-Key that created or adopted it
# (shared.records.idempotency's Claim.owner), or NO_KEY for a request without one. A record made by
# a status callback alone has no owner yet. An unknown outcome's lookup adopts only a SID that no
# other request of ours owns (see `adopt`).
OWNER_FIELD = "Owner"
# The W3C traceparent of the request that created a SID (shared.telemetry), when telemetry is on.
TRACE_FIELD = "CreatedTraceparent"
NO_KEY = "no-key"
# Table Storage takes string properties of at most 64 KiB (32K UTF-16 code units) and a whole
# entity of at most 1 MiB; a callback field longer than this is stored cut to it.
MAX_FIELD_CHARS = 4096
_FAR_FUTURE_MS = 10**13  # 2286-11-20: an inverted timestamp stays positive and 13 digits

# Lifecycle ranks: a status never gives way to one of a lower rank.
CALL_RANKS = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "completed": 4,
    "busy": 4,
    "no-answer": 4,
    "canceled": 4,
    "failed": 4,
}
MESSAGE_RANKS = {
    "queued": 0,
    "accepted": 0,
    "scheduled": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "undelivered": 3,
    "failed": 3,
    "canceled": 3,
    "partially_delivered": 3,
    "read": 4,
}
RANKS = {"call": CALL_RANKS, "message": MESSAGE_RANKS}
# What each callback carries that is worth keeping, as Twilio names it.
EVENT_FIELDS = {
    "call": (
        "CallStatus",
        "SequenceNumber",
        "Timestamp",
        "CallDuration",
        "AnsweredBy",
        "SipResponseCode",
        "ErrorCode",
    ),
    "message": ("MessageStatus", "ErrorCode", "ErrorMessage", "RawDlrDoneDate"),
}
STATUS_FIELD = {"call": "CallStatus", "message": "MessageStatus"}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def index_key(created: datetime.datetime, sid: str) -> str:
    """A row key that sorts the newest first (see TwilioRecordIndex above), for a time that
    `indexable` allows."""
    inverted = _FAR_FUTURE_MS - int(created.timestamp() * 1000)
    return f"{inverted:013d}-{sid}"


def indexable(when: datetime.datetime) -> bool:
    """Whether `index_key` can place `when` in order: after 1970 and before 2286 (13 digits of
    inverted milliseconds). A time outside made a key that sorted before every other and that
    `indexed_at` could not read: one signed callback broke the voicemail list for good."""
    return 0 < when.timestamp() * 1000 < _FAR_FUTURE_MS


def indexed_at(row_key: str) -> datetime.datetime | None:
    """The time an `index_key` was made from; None for a key that is not one."""
    digits = row_key.split("-", 1)[0]
    if not (len(digits) == 13 and digits.isascii() and digits.isdigit()):
        return None
    return datetime.datetime.fromtimestamp((_FAR_FUTURE_MS - int(digits)) / 1000, datetime.UTC)


async def index_page(
    partition: str, limit: int, token: dict[str, str] | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an index partition, newest first (records, voicemails, broadcasts), and the
    token of the next page as the caller hands it out (None on the last)."""
    async def page(index: Any) -> tuple[list[dict[str, Any]], object]:
        pages = index.query_entities(
            "PartitionKey eq @p", parameters={"p": partition}, results_per_page=limit
        ).by_page(continuation_token=token)
        async for rows in pages:
            return [dict(row) async for row in rows], pages.continuation_token
        return [], None

    rows, next_token = await storage.on_table(INDEX_TABLE, page)
    return rows, encode_token(next_token)


async def _create_record(kind: str, sid: str, fields: Mapping[str, Any],
                         repair_index: bool = False,
                         index_into: list[dict[str, Any]] | None = None,
                         created: datetime.datetime | None = None) -> bool:
    """Insert the record row if it does not exist, with its index row; True when it was new.
    With `repair_index`, a record that exists gets its index row written again (from its own
    creation time, so the same row): the index write is the one that may have failed. With
    `index_into`, a new record's index row is added to that list instead, for the caller to
    write with others (`write_index`: a broadcast's chunk). `created`: when Twilio created it,
    if known (a record written after the fact), else now."""
    from azure.core.exceptions import ResourceExistsError

    created = created or _now()
    entity = {
        "PartitionKey": sid,
        "RowKey": RECORD_ROW,
        "Kind": kind,
        "CreatedAt": created.isoformat(),
        **{k: v for k, v in fields.items() if v is not None},
    }
    try:
        await storage.on_table(RECORDS_TABLE, lambda t: t.create_entity(entity))
    except ResourceExistsError:
        if repair_index:
            row = await storage.on_table(RECORDS_TABLE, lambda t: t.get_entity(sid, RECORD_ROW))
            existed = datetime.datetime.fromisoformat(str(row.get("CreatedAt") or ""))
            await _index(kind, sid, existed)
        return False
    if index_into is not None:
        index_into.append(_index_row(kind, sid, created))
    else:
        await _index(kind, sid, created)
    return True


def _index_row(kind: str, sid: str, created: datetime.datetime) -> dict[str, Any]:
    return {
        "PartitionKey": kind,
        "RowKey": index_key(created, sid),
        "Sid": sid,
        "CreatedAt": created.isoformat(),
    }


async def _index(kind: str, sid: str, created: datetime.datetime) -> None:
    row = _index_row(kind, sid, created)
    await storage.on_table(INDEX_TABLE, lambda t: t.upsert_entity(row))


async def write_index(rows: list[dict[str, Any]]) -> None:
    """Write index rows `created` left to the caller (a transaction for each kind's hundred).
    Raises StorageUnavailable: the records stay unindexed until a lookup adopts them (`adopt`
    writes the index row again)."""
    from shared.records import batches

    await batches.upsert(INDEX_TABLE, rows)


async def created(
    kind: str,
    sid: str,
    to: str | None,
    from_: str | None,
    status: str | None,
    text: str | None,
    owner: str = NO_KEY,
    index_into: list[dict[str, Any]] | None = None,
) -> None:
    """Record what make_call or send_sms created, as soon as Twilio answered. When a status
    callback got there first, its row is completed with these fields. `index_into`: see
    `_create_record`."""
    from azure.data.tables import UpdateMode

    from shared import telemetry

    fields = {
        "To": to,
        "From": from_,
        "CreatedStatus": status,
        "Text": text,
        "Source": "app",
        OWNER_FIELD: owner,
        # The span that created it (telemetry on): a search for the SID finds its request.
        TRACE_FIELD: telemetry.current_traceparent(),
    }
    if not await _create_record(kind, sid, fields, index_into=index_into):
        update = {"PartitionKey": sid, "RowKey": RECORD_ROW, "Source": "app"}
        update |= {k: v for k, v in fields.items() if v is not None}
        await storage.on_table(
            RECORDS_TABLE, lambda t: t.upsert_entity(update, mode=UpdateMode.MERGE)
        )


async def keep_created(
    function: str,
    kind: str,
    sid: str,
    to: str | None,
    from_: str | None,
    status: str | None,
    text: str | None,
    owner: str = NO_KEY,
    index_into: list[dict[str, Any]] | None = None,
) -> bool:
    """`created`, for a function that has just created the thing at Twilio: False (and one
    error line) when the record could not be written; the caller still answers 201, since the
    call or message exists, and the first status callback will create the record."""
    from shared.common import logs, redact
    from shared.common.settings import SettingsError

    try:
        await storage.within_deadline(
            created(kind, sid, to, from_, status, text, owner, index_into))
    except SettingsError as error:
        reason = f"settings: {error.describe()}"
    except storage.StorageUnavailable as error:
        reason = str(error)
    else:
        return True
    logs.get_logger(__name__).error(
        "%s sid=%s outcome=not-recorded reason=%s", function, redact.sid(sid), reason
    )
    return False


async def inbound(
    sid: str,
    to: str | None,
    from_: str | None,
    body: str | None,
    media_urls: list[str],
    keyword: str | None,
    forwarded_to: int,
    num_media: int | None = None,
    source: str = "sms_url",
    created: datetime.datetime | None = None,
) -> bool:
    """Record a text that came in (sms_url, or reconciliation: `source`, with Twilio's
    `created` time): who sent it to which of our numbers, what it said, its media, the keyword
    it was, how many numbers it was forwarded to. False when it was recorded before (a retried
    webhook): the first stands, and its index row is written again in case it was the index
    write that failed."""
    return await _create_record("message", sid, repair_index=True, created=created, fields={
        "Direction": "inbound",
        "CreatedStatus": "received",  # Twilio's status of a text that came in
        "To": cut(to),
        "From": cut(from_),
        "Text": cut(body),
        "NumMedia": len(media_urls) if num_media is None else num_media,
        "MediaUrls": cut(json.dumps(media_urls)) if media_urls else None,
        "Keyword": keyword,
        "ForwardedTo": forwarded_to,
        "Source": source,
    })


async def forwarded(sid: str, count: int) -> None:
    """Correct how many numbers an inbound text was forwarded to: it is recorded with the flow's
    count while the opt-outs are read, and some of those numbers may have opted out."""
    from azure.data.tables import UpdateMode

    update = {"PartitionKey": sid, "RowKey": RECORD_ROW, "ForwardedTo": count}
    await storage.on_table(RECORDS_TABLE,
                           lambda t: t.update_entity(update, mode=UpdateMode.MERGE))


async def found_elsewhere(kind: str, sid: str, to: str | None, from_: str | None,
                          direction: str, text: str | None,
                          created: datetime.datetime | None = None) -> bool:
    """Record a call or text that Twilio lists and the app never saw (made in the console, by
    another app on the account), at Twilio's `created` time: False when it is recorded
    already."""
    return await _create_record(kind, sid, {"To": cut(to), "From": cut(from_),
                                            "Direction": cut(direction), "Text": cut(text),
                                            "Source": "reconcile"}, created=created)


def cut(value: str | None) -> str | None:
    """A callback's field as stored: at most MAX_FIELD_CHARS (a signed callback with a 40 KB
    field would otherwise be refused by storage on every one of Twilio's retries)."""
    return value[:MAX_FIELD_CHARS] if value else value


def _owner_of(row: Mapping[str, Any]) -> str | None:
    """Who owns a record row: its Owner, or "app" for a row the app wrote before owners were
    kept (some request of ours, which one unknown); None while only callbacks have seen it."""
    return row.get(OWNER_FIELD) or ("app" if row.get("Source") == "app" else None)


async def adopt(
    kind: str,
    sid: str,
    owner: str,
    fields: Mapping[str, str | None],
    created: datetime.datetime | None = None,
) -> bool:
    """Make `owner` (an Idempotency-Key whose create had an unknown outcome) the owner of a SID
    Twilio listed (created at `created`, Twilio's date_created); False when another request of
    ours owns it already (it created that call or message, or adopted it first). Conditional
    writes only, so two lookups never both adopt one SID."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
    from azure.data.tables import UpdateMode

    wanted = {k: v for k, v in fields.items() if v is not None}
    wanted |= {"Source": "app", OWNER_FIELD: owner}
    for _ in range(3):
        # An existing record gets its index row again: the record of a broadcast's send whose
        # chunk died before it wrote its index rows (`index_into`) is adopted here.
        if await _create_record(kind, sid, wanted, repair_index=True, created=created):
            return True
        try:
            row = await storage.on_table(RECORDS_TABLE, lambda t: t.get_entity(sid, RECORD_ROW))
        except ResourceNotFoundError:
            continue  # deleted in between: try the insert again
        current = _owner_of(row)
        if current is not None:
            return current == owner
        update = {"PartitionKey": sid, "RowKey": RECORD_ROW, **wanted}
        etag = row.metadata["etag"]
        try:
            await storage.on_table(
                RECORDS_TABLE,
                lambda t, update=update, etag=etag: t.update_entity(
                    update,
                    mode=UpdateMode.MERGE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                ),
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            continue  # changed under us (adopted or recorded at the same moment): read again
        return True
    return False


def _event_key(kind: str, params: Mapping[str, str]) -> str:
    status = params.get(STATUS_FIELD[kind], "")
    sequence = params.get("SequenceNumber", "")
    # Twilio counts a call's callbacks from 0: a "number" of more digits than any call has
    # callbacks is not one (and int() refuses one of thousands of digits).
    if kind == "call" and (number := small_count(sequence, 8)) is not None:
        return f"{EVENT_PREFIX}{number:08d}"
    identity = "\0".join(params.get(name, "") for name in EVENT_FIELDS[kind])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    rank = RANKS[kind].get(status, 9)
    return f"{EVENT_PREFIX}r{rank}-{digest}"


async def ensure_record(kind: str, sid: str, fields: Mapping[str, str | None] | None = None
                        ) -> None:
    """A record row for a SID the app learns of from a callback (an inbound call's recording),
    with what that callback knows of it (`fields`: From, Direction). The call's own callbacks
    come later and find it there, so they add nothing to it: what they alone say (To) is
    completed by reconcile (`complete`)."""
    await _create_record(kind, sid, {"Source": "callback", **(fields or {})})


async def complete(sid: str, shown: Mapping[str, Any], fields: Mapping[str, str | None]) -> bool:
    """Add `fields` (To, From, Direction as Twilio lists the call or text) to the record `shown`
    (as `read` gives it) where it lacks them; False when it had them all. For reconcile."""
    from azure.data.tables import UpdateMode

    missing = {name: cut(value) for name, value in fields.items()
               if value and shown.get(name.lower()) is None}
    if not missing:
        return False
    entity = {"PartitionKey": sid, "RowKey": RECORD_ROW, **missing}
    await storage.on_table(RECORDS_TABLE, lambda t: t.upsert_entity(entity, mode=UpdateMode.MERGE))
    return True


async def event(kind: str, sid: str, params: Mapping[str, str]) -> bool:
    """Store one status callback; False when the same event was already stored. A SID the app
    did not create (a call placed from the console) gets a record all the same."""
    from azure.core.exceptions import ResourceExistsError

    await _create_record(
        kind,
        sid,
        {"To": cut(params.get("To")), "From": cut(params.get("From")),
         "Direction": cut(params.get("Direction")), "Source": "callback"},
    )
    entity: dict[str, Any] = {
        "PartitionKey": sid,
        "RowKey": _event_key(kind, params),
        "ReceivedAt": _now().isoformat(),
    }
    entity |= {name: cut(params[name]) for name in EVENT_FIELDS[kind] if params.get(name)}
    try:
        await storage.on_table(RECORDS_TABLE, lambda t: t.create_entity(entity))
    except ResourceExistsError:
        return False
    return True


def _rank(kind: str, status: str | None) -> int:
    return RANKS[kind].get(status or "", -1)


def _public(kind: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    record = next((r for r in rows if r["RowKey"] == RECORD_ROW), None)
    if record is None:
        return None
    status_field = STATUS_FIELD[kind]
    events = [r for r in rows if r["RowKey"].startswith(EVENT_PREFIX)]
    # Twilio's order: a call's SequenceNumber; a message's lifecycle; then arrival.
    events.sort(key=lambda e: (e["RowKey"], e.get("ReceivedAt", "")))
    status = record.get("CreatedStatus")
    best = (_rank(kind, status), "")
    error_code = None
    for row in events:
        candidate = (_rank(kind, row.get(status_field)), row["RowKey"])
        if candidate >= best:
            best, status = candidate, row.get(status_field)
        error_code = row.get("ErrorCode") or error_code
    return {
        "sid": record["PartitionKey"],
        "kind": kind,
        "status": status,
        "to": record.get("To"),
        "from": record.get("From"),
        "created_status": record.get("CreatedStatus"),
        "created_at": record.get("CreatedAt"),
        "text": record.get("Text"),
        # Twilio's words: inbound, outbound-api (what the app created), outbound-dial...
        "direction": record.get("Direction")
        or ("outbound-api" if record.get("Source") == "app" else None),
        **(_inbound(record) if kind == "message" and record.get("Direction") == "inbound" else {}),
        "error_code": error_code,
        "recorded_by": record.get("Source"),
        "created_traceparent": record.get(TRACE_FIELD),
        "events": [
            {
                "status": e.get(status_field),
                "received_at": e.get("ReceivedAt"),
                **{n: e[n] for n in EVENT_FIELDS[kind] if n != status_field and e.get(n)},
            }
            for e in events
        ],
        **({"recordings": _recordings(rows)} if kind == "call" else {}),
    }


def _inbound(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a record of a text that came in adds: its media, keyword and forwarding."""
    try:
        media = json.loads(record.get("MediaUrls") or "[]")
    except ValueError:
        media = []  # cut short in storage: the count still says how many
    return {
        "num_media": record.get("NumMedia") or 0,
        "media_urls": media if isinstance(media, list) else [],
        "keyword": record.get("Keyword"),
        "forwarded_to": record.get("ForwardedTo") or 0,
    }


def _recordings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A call's recordings (a call flow's voicemail), as their callbacks described them."""
    return [
        {
            "sid": r.get("RecordingSid"),
            "status": r.get("RecordingStatus"),
            "duration_seconds": small_count(r.get("RecordingDuration"), 6),
            "transcription": r.get("TranscriptionText"),
            "transcription_status": r.get("TranscriptionStatus"),
            "deleted": bool(r.get("Deleted")),
        }
        for r in rows
        if r["RowKey"].startswith(RECORDING_PREFIX)
    ]


async def read(kind: str, sid: str) -> dict[str, Any] | None:
    """The record and its events, or None for a SID never seen (or of another kind)."""
    async def rows(records: Any) -> list[dict[str, Any]]:
        query = records.query_entities("PartitionKey eq @sid", parameters={"sid": sid})
        return [dict(row) async for row in query]

    found = await storage.on_table(RECORDS_TABLE, rows)
    result = _public(kind, found)
    if result is None or next(r for r in found if r["RowKey"] == RECORD_ROW).get("Kind") != kind:
        return None
    return result


def encode_token(token: object) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


def decode_token(text: str) -> dict[str, str]:
    """A continuation token as the caller got it; ValueError when it is not one of ours."""
    padded = text + "=" * (-len(text) % 4)
    try:
        token = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..."
        raise ValueError("not a continuation token") from None
    # Table Storage's: where the next page starts (a hand-made {} or {"a": "b"} read as the
    # first page, an attack run's).
    if not isinstance(token, dict) or set(token) != {"PartitionKey", "RowKey"} \
            or not all(isinstance(v, str) and v for v in token.values()):
        raise ValueError("not a continuation token")
    if not all(is_unicode(text) for text in (*token, *token.values())):
        raise ValueError("not a continuation token")  # no request can carry it
    return token


async def recent(
    kind: str, limit: int, token: dict[str, str] | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The newest records of a kind, one page of `limit`, and the token of the next page."""
    rows, next_token = await index_page(kind, limit, token)
    found = await asyncio.gather(*(read(kind, row["Sid"]) for row in rows))
    items = [{k: v for k, v in r.items() if k != "events"} for r in found if r is not None]
    return items, next_token
