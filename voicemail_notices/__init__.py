"""voicemail_notices: every 15 minutes, send the voicemail texts (a call flow's notify_sms) that
recording_status still owes once Twilio's tries of its callback, all within 15 seconds, are over
(Twilio refusing for longer, a create whose outcome takes a minute to settle); each once, under
the callback's own idempotency key (shared.callflows.voicemail.finish_owed). By hand:
`.venv/bin/python scripts/voicemail_notices.py`, or on Azure the host's admin endpoint,
POST /admin/functions/voicemail_notices."""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(timer: func.TimerRequest) -> None:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.callflows import voicemail

    await voicemail.finish_owed()
