"""voicemails: GET /api/voicemails lists a call flow's voicemails, newest first, a page at a
time; DELETE /api/voicemails/{RecordingSid} deletes one at Twilio and marks its record (function
key required for both). The audio is the recordings function's."""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.records import voicemails

    return await voicemails.handle(req)
