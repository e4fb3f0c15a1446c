"""make_call: POST /api/make_call (function key required) places an outbound call via Twilio.

Body: {"to": "+14155550100", "from": optional caller ID, "message": optional greeting}.
Async, so one worker serves many calls while each waits on Twilio's API.
"""

import azure.functions as func

from shared.calls import place_call


async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await place_call(req)
