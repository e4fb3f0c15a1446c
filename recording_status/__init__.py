"""recording_status: Twilio's recording status and transcription callbacks for a call flow's
voicemail. Verified like every webhook, then kept on the call's record (RecordingSid, duration,
status, the transcription's text; never the recording's URL), and the step's notify_sms numbers
are texted once each (shared/callflows/voicemail.py)."""

import azure.functions as func

from shared import telemetry, webhooks


async def record(callback: webhooks.Webhook) -> str:
    from shared.callflows import voicemail  # on first use, not at load (docs/benchmark.md)

    return await voicemail.keep(callback)


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await webhooks.acknowledge(req, "recording_status", "RecordingSid", record)
