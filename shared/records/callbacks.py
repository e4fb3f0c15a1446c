"""What call_status and message_status do with a verified status callback: store it, and keep
Twilio's 21610 on a text (the recipient opted out) as their opt-out, as send_sms does when
Twilio answers it at once.

Storage that cannot be reached (or is not configured) makes the callback answer 503: Twilio's
debugger then shows the failure, and a retry can deliver the event again, which is stored once.
"""

from __future__ import annotations

from shared import webhooks
from shared.common import logs, redact
from shared.common.settings import SettingsError
from shared.records import optouts, sids, storage, store
from shared.records.storage import StorageUnavailable

logger = logs.get_logger(__name__)

SID_PARAM = {"call": "CallSid", "message": "MessageSid"}


async def keep(kind: str, callback: webhooks.Webhook) -> str:
    """The outcome word for the log line: recorded, duplicate, ignored (no SID to file it
    under) or not-recorded (storage refused it); the last two are answered 204 all the same,
    since a retry would not change them."""
    params = callback.params()
    sid = params.get(SID_PARAM[kind]) or ""
    if not sids.BY_KIND[kind].fullmatch(sid):
        return "ignored"
    try:
        if kind == "message" and params.get("ErrorCode") == str(optouts.TWILIO_OPTED_OUT):
            # Kept before the event, so that a retry after a failure here keeps it again.
            await storage.within_deadline(optouts.keep_twilio_refusal(
                params.get("From"), params.get("MessagingServiceSid"), params.get("To"), sid))
        stored = await storage.within_deadline(store.event(kind, sid, params))
        if callback.query.get("broadcast"):  # a broadcast's call or text: its counts follow
            from shared.broadcasts import delivery

            await storage.within_deadline(delivery.follow(kind, callback.query, params))
    except storage.StorageRefused as error:
        # Storage will refuse this callback on every retry: 503 would only have Twilio send it
        # again until it gives up. Logged for the operator; answered 204.
        logger.error("%s %s=%s outcome=not-recorded reason=%s", kind, SID_PARAM[kind],
                     redact.sid(sid), error)
        return "not-recorded"
    except SettingsError as error:
        raise webhooks.Retry(f"settings: {error.describe()}") from None
    except StorageUnavailable as error:
        raise webhooks.Retry(str(error)) from None
    return "recorded" if stored else "duplicate"
