"""make_call: POST /api/make_call (function key required) places an outbound call via Twilio.

Body: {"to": "+14155550100", "from": optional caller ID, "message": optional greeting}. With an
Idempotency-Key header, one key places at most one call (shared/records/idempotency.py).
Async, so one worker serves many calls while each waits on Twilio's API.
"""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.outbound import endpoint

    return await endpoint.handle(req, endpoint.CALL)
