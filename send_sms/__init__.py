"""send_sms: POST /api/send_sms (function key required) sends a text message via Twilio.

Body: {"to": "+14155550100", "body": "text", "from": optional sender, "media_url": optional
https URL or list of them (MMS)}. With an Idempotency-Key header, one key sends at most one
message (shared/records/idempotency.py). Async, like make_call.
"""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.outbound import endpoint

    return await endpoint.handle(req, endpoint.MESSAGE)
