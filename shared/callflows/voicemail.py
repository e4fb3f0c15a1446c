"""A call flow's voicemail, after the call: the recording (and its transcription) kept on the
call's record, and a text to each of the step's `notify_sms` numbers: one when the recording is
complete ("New voicemail from …, 42 s"), one when its transcription arrives. Each text is sent
once per (recording, number, kind) whatever the number of times Twilio delivers the callback;
a text that could not be sent yet makes the callback answer 503, so Twilio tries it again.
"""

from __future__ import annotations

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
    await _notify(recording, kind, numbers, body)
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


async def _notify(recording: str, kind: str, numbers: tuple[str, ...], body: str) -> None:
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
        raise webhooks.Retry(f"{len(pending)} voicemail notification(s) to try again")
