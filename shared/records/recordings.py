"""Recordings of calls (a call flow's voicemail) and their transcriptions, kept on the call's
record: a row `recording-<RecordingSid>` in the call's partition of TwilioRecords, merged, so a
callback Twilio retries (the same RecordingSid twice) changes nothing. The recording's URL is
never kept: playing it needs the account's credentials."""

from __future__ import annotations

from typing import Any, NamedTuple

from shared import webhooks
from shared.common import logs, redact
from shared.common.settings import SettingsError
from shared.records import sids, storage, store

logger = logs.get_logger(__name__)

RECORDING_PREFIX = store.RECORDING_PREFIX
# What a recording status callback and a transcription callback carry that is worth keeping.
FIELDS = ("RecordingStatus", "RecordingDuration", "RecordingChannels", "RecordingSource",
          "ErrorCode", "TranscriptionSid", "TranscriptionStatus", "TranscriptionText")


class Kept(NamedTuple):
    """What `keep` did: the outcome word for the log line (recorded, ignored: no SIDs to file it
    under, not-recorded: storage refused it); and whether a completed recording was filed as a
    voicemail for the first time (False on Twilio's retries of its callback)."""

    outcome: str
    new_voicemail: bool = False


async def keep(callback: webhooks.Webhook) -> Kept:
    """Keep a recording or transcription callback on its call's record (raises webhooks.Retry
    when storage is unavailable)."""
    params = callback.params()
    recording, call = params.get("RecordingSid") or "", params.get("CallSid") or ""
    if not sids.RECORDING.fullmatch(recording) or not sids.CALL.fullmatch(call):
        return Kept("ignored")
    row: dict[str, Any] = {"PartitionKey": call, "RowKey": RECORDING_PREFIX + recording,
                           "RecordingSid": recording}
    row |= {name: store.cut(params[name]) for name in FIELDS if params.get(name)}
    # A recording callback says nothing of who called: the call flow puts the caller in its URL
    # (signed), and the call's own callbacks come after the recording's, too late to say it.
    caller = store.cut(callback.query.get("caller") or None)
    try:
        new_voicemail = await storage.within_deadline(_write(call, row, params, caller))
    except storage.StorageRefused as error:
        logger.error("recording_status RecordingSid=%s outcome=not-recorded reason=%s",
                     redact.sid(recording), error)
        return Kept("not-recorded")
    except SettingsError as error:
        raise webhooks.Retry(f"settings: {error.describe()}") from None
    except storage.StorageUnavailable as error:
        raise webhooks.Retry(str(error)) from None
    return Kept("recorded", new_voicemail)


async def _write(call: str, row: dict[str, Any], params: dict[str, str],
                 caller: str | None) -> bool:
    from azure.data.tables import UpdateMode

    from shared.records import voicemails

    # Only a call flow records, and it walks only the calls people make to the app.
    await store.ensure_record("call", call, {"From": caller, "Direction": "inbound"})
    await storage.on_table(store.RECORDS_TABLE,
                           lambda t: t.upsert_entity(row, mode=UpdateMode.MERGE))
    if params.get("RecordingStatus") == "completed":  # a voicemail to play (not absent, failed)
        return await voicemails.file(call, row["RecordingSid"], params)
    return False
