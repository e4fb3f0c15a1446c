"""A call flow's voicemail, after the call: the recording (and its transcription) kept on the
call's record, and a text to each of the step's `notify_sms` numbers: one when the recording is
complete ("New voicemail from …, 42 s"), one when its transcription arrives. Each text is sent
once per (recording, number, kind) whatever the number of times Twilio delivers the callback;
a text that could not be sent yet makes the callback answer 503, so Twilio tries it again.

Twilio's tries of a callback last 15 seconds (its connection overrides), less than an unknown
outcome takes to settle or an outage may last. So a text still owed is also kept, as a row of
TwilioVoicemailNotices, and the `voicemail_notices` timer (every 15 minutes) finishes it
(`finish_owed`) under the same idempotency key: a text the callback sent after all is replayed,
never sent twice. A row is sealed (HMAC-SHA256 under the auth token, over all it holds) and names
its flow step; one that does not verify, or names a number that step no longer notifies, is
dropped unsent, and so is one older than the keys' day (its key may be gone).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import time
from typing import Any

from shared import telemetry, webhooks
from shared.callflows import loading
from shared.callflows.flow import FlowProblems
from shared.common import logs, redact
from shared.common.settings import SettingsError
from shared.common.text import small_count
from shared.records import recordings

logger = logs.get_logger(__name__)

FUNCTION = "voicemail_sms"
# Answers that settle a notification: sent (or found sent), or refused for good.
SETTLED = frozenset({201, 400, 403, 422})
MAX_TRANSCRIPTION = 1_400  # of a text's 1,600 characters, the rest for the words around it
OWED_TABLE = "TwilioVoicemailNotices"
OWED_PARTITION = "owed"
# A row owed longer than this is dropped unsent: the idempotency key that keeps it from being
# sent twice lasts a day from its claim.
OWED_FOR_AT_MOST = datetime.timedelta(hours=23)
# Seconds finish_owed may take, inside the timer's 12 s.
FINISH_BUDGET = 8.0


async def keep(callback: webhooks.Webhook) -> str:
    """recording_status: store, then notify; the outcome word for the log line."""
    kept = await recordings.keep(callback)
    outcome = kept.outcome
    if outcome != "recorded":
        return outcome
    if kept.new_voicemail:  # once per recording, not on Twilio's retries of its callback
        telemetry.count_flow_outcome("voicemail-taken")
    numbers = _notify_numbers(callback)
    if not numbers:
        return outcome
    params = callback.params()
    recording = params.get("RecordingSid") or ""
    caller = _readable(callback.query.get("caller") or "")
    if params.get("TranscriptionSid"):
        if params.get("TranscriptionStatus") != "completed" or not params.get("TranscriptionText"):
            return outcome
        words = params["TranscriptionText"][:MAX_TRANSCRIPTION]
        body, kind = f"Voicemail from {caller}: {words}", "transcription"
    elif params.get("RecordingStatus") == "completed":
        # As the call's record shows it: a duration that is not a small count is left out.
        seconds = small_count(params.get("RecordingDuration"), 6)
        length = "" if seconds is None else f", {seconds} s"
        body, kind = f"New voicemail from {caller}{length}.", "recording"
    else:
        return outcome
    await _notify(recording, kind, numbers, body, callback)
    return f"{outcome} notified={len(numbers)}"


def _notify_numbers(callback: webhooks.Webhook) -> tuple[str, ...]:
    if not callback.settings.call_flow:
        return ()
    flow = loading.flow(callback.settings.call_flow)
    step = None if isinstance(flow, FlowProblems) else flow.steps.get(
        callback.query.get("step", ""))
    return step.record.notify_sms if step is not None and step.record else ()


def _readable(number: str) -> str:
    """The caller's number as a person reads it (+1 415-555-0123), or 'an unknown number'."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "an unknown number"
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


async def _notify(recording: str, kind: str, numbers: tuple[str, ...], body: str,
                  callback: webhooks.Webhook) -> None:
    from shared.outbound import once
    from shared.outbound.settings import load_sms_settings

    try:
        settings = load_sms_settings()
    except SettingsError as error:
        logger.error("voicemail RecordingSid=%s outcome=not-notified reason=settings: %s",
                     redact.sid(recording), error.describe())
        return
    pending = []
    for number in numbers:
        answer = await once.text(FUNCTION, f"{recording}:{number}:{kind}", number, body, settings)
        if answer.status_code not in SETTLED:
            pending.append(number)
        elif answer.status_code != 201:
            logger.warning("voicemail RecordingSid=%s to=%s outcome=not-notified status=%d",
                           redact.sid(recording), redact.phone_number(number),
                           answer.status_code)
    if pending:
        await _owe(recording, kind, pending, body, callback)
        raise webhooks.Retry(f"{len(pending)} voicemail notification(s) to try again")


def _key(recording: str, number: str, kind: str) -> str:
    return f"{recording}:{number}:{kind}"


def _seal(secret: str, row: dict[str, Any]) -> str:
    """The row's HMAC: over everything it holds, its age too (as whole seconds, which survive
    the table's own datetime), so no field can be changed, nor an old row made young again."""
    since = row.get("OwedSince")
    age = int(since.timestamp()) if isinstance(since, datetime.datetime) else ""
    fields = "\n".join([*(str(row.get(name) or "") for name in
                          ("RowKey", "Recording", "To", "Kind", "Step", "Body")), str(age)])
    return hmac.new(secret.encode(), fields.encode(), hashlib.sha256).hexdigest()


async def _owe(recording: str, kind: str, numbers: list[str], body: str,
               callback: webhooks.Webhook) -> None:
    """Keep the texts still owed for finish_owed; a failure to keep them is logged (Twilio's
    own tries of the callback are then all that is left)."""
    from shared.records import storage

    now = datetime.datetime.now(datetime.UTC)
    rows = []
    for number in numbers:
        row = {"PartitionKey": OWED_PARTITION,
               "RowKey": hashlib.sha256(_key(recording, number, kind).encode()).hexdigest(),
               "Recording": recording, "To": number, "Kind": kind, "Body": body,
               "Step": callback.query.get("step") or "", "OwedSince": now}
        rows.append(row | {"Seal": _seal(callback.settings.auth_tokens[0], row)})
    try:
        for row in rows:  # the same row again on Twilio's next try: written over
            await storage.within_deadline(storage.on_table(
                OWED_TABLE, lambda t, row=row: t.upsert_entity(row)))
    except storage.StorageUnavailable as error:
        logger.error("voicemail RecordingSid=%s outcome=not-kept-for-later reason=%s",
                     redact.sid(recording), error)


async def finish_owed(budget: float = FINISH_BUDGET) -> int:
    """The voicemail_notices timer: send the voicemail texts recording_status still owes; how
    many it settled. Never raises: a failure is logged, and the rows wait for the next run."""
    from shared.outbound.settings import load_sms_settings
    from shared.records import storage
    from shared.webhooks.settings import load_callback_settings

    deadline = time.monotonic() + budget
    settled = 0
    try:
        rows = await storage.within_deadline(storage.on_table(OWED_TABLE, _owed))
        if not rows:  # the usual run: nothing owed, no flow to read
            return 0
        hooks = load_callback_settings()
        flow = loading.flow(hooks.call_flow) if hooks.call_flow else None
        sms_settings = load_sms_settings()
        for row in rows:
            if time.monotonic() > deadline:
                break
            why = _drop_reason(row, hooks.auth_tokens, flow)
            if why is None:
                answer = await _send_owed(row, sms_settings)
                if answer.status_code not in SETTLED:
                    continue  # still owed: the next run
                settled += 1
                logger.info("voicemail RecordingSid=%s to=%s outcome=notified-later status=%d",
                            redact.sid(row.get("Recording")), redact.phone_number(row.get("To")),
                            answer.status_code)
            else:
                logger.error("voicemail RecordingSid=%s outcome=dropped reason=%s",
                             redact.sid(row.get("Recording")), why)
            await storage.within_deadline(storage.on_table(
                OWED_TABLE, lambda t, row=row: t.delete_entity(OWED_PARTITION, row["RowKey"])))
    except (storage.StorageUnavailable, SettingsError) as error:
        logger.error("voicemail outcome=owed-not-finished reason=%s", error)
    return settled


async def _owed(table: Any) -> list[dict[str, Any]]:
    return [row async for row in table.query_entities(
        "PartitionKey eq @p", parameters={"p": OWED_PARTITION})]


async def _send_owed(row: dict[str, Any], settings: Any) -> Any:
    from shared.outbound import once

    return await once.text(FUNCTION, _key(row["Recording"], row["To"], row["Kind"]), row["To"],
                           row["Body"], settings)


def _drop_reason(row: dict[str, Any], secrets: tuple[str, ...], flow: Any) -> str | None:
    """Why an owed row is not to be sent, or None: it does not verify (written by someone
    else, or before the auth token was rotated), its step no longer notifies its number, or it
    is older than its key."""
    seal = str(row.get("Seal") or "")
    if not any(hmac.compare_digest(_seal(secret, row), seal) for secret in secrets):
        return "its seal does not verify"
    step = None if flow is None or isinstance(flow, FlowProblems) else flow.steps.get(
        row.get("Step") or "")
    if step is None or not step.record or row.get("To") not in step.record.notify_sms:
        return "the call flow no longer notifies that number from that step"
    since = row.get("OwedSince")
    if not isinstance(since, datetime.datetime) or (
            datetime.datetime.now(datetime.UTC) - since > OWED_FOR_AT_MOST):
        return "owed for longer than its idempotency key lasts"
    return None
