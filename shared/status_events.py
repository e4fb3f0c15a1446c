"""What call_status and message_status do with a verified status callback: store it.

Storage that cannot be reached (or is not configured) makes the callback answer 503: Twilio's
debugger then shows the failure, and a retry can deliver the event again, which is stored once.
"""

from __future__ import annotations

import re

from shared import records, storage, webhooks
from shared.settings import SettingsError
from shared.storage import StorageUnavailable

SID_PARAM = {"call": "CallSid", "message": "MessageSid"}
SID = {"call": re.compile(r"CA[0-9a-fA-F]{32}"), "message": re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")}


async def store(kind: str, callback: webhooks.Webhook) -> str:
    """The outcome word for the log line: recorded, duplicate or ignored (no SID to file it
    under; answered 204 all the same, since a retry would not bring one)."""
    params = callback.params()
    sid = params.get(SID_PARAM[kind]) or ""
    if not SID[kind].fullmatch(sid):
        return "ignored"
    try:
        stored = await storage.within_deadline(records.event(kind, sid, params))
    except SettingsError as error:
        raise webhooks.Retry(f"settings: {error.describe()}") from None
    except StorageUnavailable as error:
        raise webhooks.Retry(str(error)) from None
    return "recorded" if stored else "duplicate"
