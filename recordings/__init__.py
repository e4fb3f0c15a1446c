"""recordings: GET /api/recordings/{RecordingSid}.mp3 plays a voicemail: the audio is fetched
from Twilio with the account's credentials and passed on, honouring Range (function key
required). The browser never sees Twilio's URL or the credentials."""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.records import voicemails

    return await voicemails.media(req)
