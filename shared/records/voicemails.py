"""Voicemails over HTTP, for the console (function key required): the list, the audio, deleting.

- GET /api/voicemails: the newest first, a page at a time (`?limit=`, `?continuation=` as for the
  records), each with its call's caller, time, duration and transcription.
- GET /api/recordings/{RecordingSid}.mp3: the audio, fetched from Twilio with the account's
  credentials (shared.records.recording_media) and passed on, honouring `Range` so a player can
  seek. The browser never sees Twilio's URL or the credentials.
- DELETE /api/voicemails/{RecordingSid}: deletes the recording at Twilio (which keeps every
  recording, and bills its storage, until it is deleted) and marks it deleted on the call's
  record; the transcription stays on the record.

A recording is filed when its status callback arrives (shared.records.recordings): two rows in
TwilioRecordIndex, partition `recording` (RecordingSid -> its call and index row, created once)
and partition `voicemail` (newest first, as the records' index), so that a callback Twilio
retries writes the same index row again.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Mapping
from typing import Any

import azure.functions as func

from shared.common import logs, redact, responses, routes
from shared.common.settings import SettingsError
from shared.console import signin
from shared.records import queries, sids, storage, store
from shared.records.storage import StorageRefused, StorageUnavailable

logger = logs.get_logger(__name__)

VOICEMAIL_PARTITION = "voicemail"
LOOKUP_PARTITION = "recording"
MEDIA_FILE = re.compile(r"(" + sids.RECORDING.pattern + r")\.mp3")
_RANGE = re.compile(r"bytes=(\d{0,15})-(\d{0,15})")


def _started(params: Mapping[str, str]) -> datetime.datetime:
    """When the recording started, as Twilio says (RecordingStartTime, RFC 2822): the same on
    every retry of the callback, so its index row is the same row."""
    raw = params.get("RecordingStartTime") or ""
    try:
        started = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, OverflowError):
        return store._now()
    started = started if started.tzinfo else started.replace(tzinfo=datetime.UTC)
    # Twilio's is a moment ago; one the index cannot hold (after 2286) is not Twilio's.
    return started if store.indexable(started) else store._now()


async def file(call: str, recording: str, params: Mapping[str, str]) -> bool:
    """Index a recording: its lookup row first, created only if absent, so that the first
    callback's time is the one kept (a retry without RecordingStartTime, or two retries at
    once, land on the same index row); then the index row itself, created only if absent too.
    True when this call created the index row, the last write: the first time the recording
    was filed whole (a first try that failed between the two writes leaves it to the retry)."""
    from azure.core.exceptions import ResourceExistsError

    key = store.index_key(_started(params), recording)
    lookup = {"PartitionKey": LOOKUP_PARTITION, "RowKey": recording, "CallSid": call,
              "IndexKey": key}
    try:
        await storage.on_table(store.INDEX_TABLE, lambda t: t.create_entity(lookup))
    except ResourceExistsError:
        found = await _lookup(recording)
        if found is not None:
            key, call = str(found["IndexKey"]), str(found["CallSid"])
    row = {"PartitionKey": VOICEMAIL_PARTITION, "RowKey": key, "Sid": recording,
           "CallSid": call}
    try:
        await storage.on_table(store.INDEX_TABLE, lambda t: t.create_entity(row))
    except ResourceExistsError:
        return False  # filed before: the same row, from the same lookup
    return True


async def handle(req: func.HttpRequest) -> func.HttpResponse:
    if refused := signin.refusal(req):
        return refused
    sid = req.route_params.get("sid")
    if req.method.upper() == "DELETE":
        if not sid:
            return responses.json_error(405, "Name the voicemail: DELETE /api/voicemails/{sid}.")
        return await delete(sid)
    if sid:
        return responses.json_error(
            404, "A voicemail's audio is at /api/recordings/{sid}.mp3; the list is "
            "GET /api/voicemails.")
    return await listing(req)


async def listing(req: func.HttpRequest) -> func.HttpResponse:
    query = queries.page_query(req, queries.DEFAULT_LIMIT, queries.MAX_LIMIT)
    if isinstance(query, func.HttpResponse):
        return query
    limit, token = query
    try:
        items, next_token = await storage.within_deadline(_page(limit, token))
    except (SettingsError, StorageUnavailable) as error:
        return _unavailable(error)
    following = queries.next_url(routes.path("voicemails"), limit, next_token)
    return responses.json_body({"voicemails": items, "next": next_token,
                                "next_url": following}, 200)


async def _page(
    limit: int, token: dict[str, str] | None
) -> tuple[list[dict[str, Any]], str | None]:
    import asyncio

    rows, next_token = await store.index_page(VOICEMAIL_PARTITION, limit, token)
    calls = await asyncio.gather(*(store.read("call", row["CallSid"]) for row in rows))
    return [_voicemail(row, call) for row, call in zip(rows, calls, strict=True)], next_token


def _voicemail(row: Mapping[str, Any], call: Mapping[str, Any] | None) -> dict[str, Any]:
    recording = next((r for r in (call or {}).get("recordings", []) if r["sid"] == row["Sid"]),
                     {})
    started = store.indexed_at(str(row["RowKey"]))
    return {
        "sid": row["Sid"],
        "call_sid": row["CallSid"],
        "from": (call or {}).get("from"),
        "to": (call or {}).get("to"),
        "created_at": started.isoformat() if started else None,
        "duration_seconds": recording.get("duration_seconds"),
        "status": recording.get("status"),
        "transcription": recording.get("transcription"),
        "transcription_status": recording.get("transcription_status"),
        "deleted": bool(recording.get("deleted")),
    }


async def _lookup(recording: str) -> dict[str, Any] | None:
    from azure.core.exceptions import ResourceNotFoundError

    async def get(index: Any) -> dict[str, Any] | None:
        try:
            return dict(await index.get_entity(LOOKUP_PARTITION, recording))
        except ResourceNotFoundError:
            return None

    return await storage.on_table(store.INDEX_TABLE, get)


async def _recording_row(call: str, recording: str) -> dict[str, Any] | None:
    from azure.core.exceptions import ResourceNotFoundError

    async def get(records: Any) -> dict[str, Any] | None:
        try:
            return dict(await records.get_entity(call, store_row(recording)))
        except ResourceNotFoundError:
            return None

    return await storage.on_table(store.RECORDS_TABLE, get)


def store_row(recording: str) -> str:
    return store.RECORDING_PREFIX + recording


async def delete(recording: str) -> func.HttpResponse:
    """Delete at Twilio first, then mark: a failure at Twilio leaves the record as it was, so
    the console still offers to delete it."""
    from azure.data.tables import UpdateMode

    from shared.outbound import twilio_client
    from shared.outbound.settings import load_rest_settings

    if not sids.RECORDING.fullmatch(recording):
        return responses.json_error(
            400, f"'{recording[:40]}' is not a recording SID, like RE followed by 32 hex digits.")
    try:
        rest = load_rest_settings()
        found = await storage.within_deadline(_lookup(recording))
        row = await storage.within_deadline(
            _recording_row(found["CallSid"], recording)) if found else None
    except (SettingsError, StorageUnavailable) as error:
        return _unavailable(error)
    if found is None:
        return responses.json_error(404, f"No voicemail with the SID {recording} is recorded.")
    if row and row.get("Deleted"):  # deleted before: the same answer, its time unchanged
        return _deleted(recording, found["CallSid"], str(row.get("DeletedAt") or ""),
                        "deleted before")
    from twilio.base.exceptions import TwilioRestException

    try:
        client = twilio_client.get_client(rest)
        await client.api.v2010.account.recordings(recording).delete_async()
        at_twilio = "deleted at Twilio"
    except TwilioRestException as error:
        if error.status != 404:
            logger.error("voicemails RecordingSid=%s outcome=failed reason=Twilio %s %s",
                         recording, error.status, error.code)
            return responses.json_error(
                502, f"Twilio did not delete the recording ({error.status}, error "
                f"{error.code}): nothing was changed; try again.", twilio_code=error.code)
        at_twilio = "already gone at Twilio"
    except Exception as error:  # the network or the client: said in the answer, never raised
        logger.error("voicemails RecordingSid=%s outcome=failed reason=%s", recording,
                     type(error).__name__)
        return responses.json_error(
            502, "Twilio could not be reached to delete the recording: nothing was changed; "
            "try again.")
    deleted_at = store._now().isoformat()
    mark = {"PartitionKey": found["CallSid"], "RowKey": store_row(recording), "Deleted": True,
            "DeletedAt": deleted_at}
    try:
        await storage.within_deadline(storage.on_table(
            store.RECORDS_TABLE, lambda t: t.upsert_entity(mark, mode=UpdateMode.MERGE)))
    except (SettingsError, StorageUnavailable) as error:
        return _unavailable(error)
    logger.info("voicemails RecordingSid=%s outcome=deleted call=%s", recording,
                redact.sid(found["CallSid"]))
    return _deleted(recording, found["CallSid"], deleted_at, at_twilio)


def _deleted(recording: str, call: str, deleted_at: str, how: str) -> func.HttpResponse:
    return responses.json_body({"sid": recording, "call_sid": call, "deleted": True,
                                "deleted_at": deleted_at,
                                "message": f"The recording was {how}; its record is kept, "
                                "marked deleted."}, 200)


async def media(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/recordings/{RecordingSid}.mp3: the audio, whole (200) or the asked range (206)."""
    from shared.outbound.settings import load_rest_settings
    from shared.records import recording_media

    if refused := signin.refusal(req):
        return refused
    match = MEDIA_FILE.fullmatch(req.route_params.get("file") or "")
    if match is None:
        return responses.json_error(
            404, "A recording's audio is /api/recordings/RE followed by 32 hex digits, .mp3.")
    recording = match.group(1)
    try:
        rest = load_rest_settings()
        found = await storage.within_deadline(_lookup(recording))
        row = await storage.within_deadline(
            _recording_row(found["CallSid"], recording)) if found else None
    except (SettingsError, StorageUnavailable) as error:
        return _unavailable(error)
    if found is None:
        return responses.json_error(404, f"No voicemail with the SID {recording} is recorded.")
    if row and row.get("Deleted"):
        return responses.json_error(410, f"The recording {recording} was deleted.")
    try:
        audio = await recording_media.fetch(rest, recording)
    except recording_media.MediaUnavailable as error:
        logger.error("recordings RecordingSid=%s outcome=failed reason=%s", recording, error)
        return responses.json_error(502, f"The recording cannot be fetched now: {error}.")
    if audio is None:
        return responses.json_error(
            404, f"Twilio has no recording {recording} (deleted in Twilio's console?).")
    return ranged(audio, req.headers.get("range"))


def ranged(body: bytes, header: str | None) -> func.HttpResponse:
    """`body` as audio/mpeg: whole, or the one byte range `header` asks for (RFC 9110: a
    suffix range `-N`, an open range `N-`, or `N-M`); 416 for a range outside it. A header that
    is not one range of bytes is ignored, as the RFC allows."""
    # no-store, as every JSON answer: a cached copy played without the key for five minutes,
    # after sign-out and after the recording was deleted (an attack run's).
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff"}
    size = len(body)
    match = _RANGE.fullmatch((header or "").strip())
    if match is None or match.groups() == ("", ""):
        return func.HttpResponse(body, status_code=200, mimetype="audio/mpeg", headers=headers)
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return func.HttpResponse(b"", status_code=416,
                                 headers={**headers, "Content-Range": f"bytes */{size}"})
    return func.HttpResponse(body[start:end + 1], status_code=206, mimetype="audio/mpeg",
                             headers={**headers, "Content-Range": f"bytes {start}-{end}/{size}"})


def _unavailable(error: Exception) -> func.HttpResponse:
    if isinstance(error, StorageRefused):  # storage will never take this request: the caller's
        logger.warning("voicemails outcome=refused status=400 reason=%s", error)
        return responses.json_error(
            400, "Storage cannot look that up: the SID or 'continuation' is malformed.")
    if isinstance(error, SettingsError):
        logger.error("voicemails outcome=failed reason=settings: %s", error.describe())
        return responses.not_configured(error)
    logger.error("voicemails outcome=unavailable reason=%s", error)
    return responses.json_error(
        503, "The voicemails cannot be read now: storage is unavailable. Try again shortly.",
        headers={"Retry-After": "5"})
