"""send_sms: POST /api/send_sms (function key required) sends a text message via Twilio.

Body: {"to": "+14155550100", "body": "text", "from": optional sender, "media_url": optional
https URL or list of them (MMS)}. With an Idempotency-Key header, one key sends at most one
message (shared/records/idempotency.py). Async, like make_call.
"""

import azure.functions as func


async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on the first invocation, not when the worker loads the function: the worker
    # loads every function of the app at start, and a webhook's cold start must not pay for
    # this function's modules (docs/benchmark.md, cold start).
    from shared.outbound import endpoint

    return await endpoint.handle(req, endpoint.MESSAGE)
