"""broadcasts: POST /api/broadcasts starts a broadcast (one text or call to up to 10,000
numbers, through the `broadcast-sends` queue); GET /api/broadcasts/{id} shows how it is going.
Function key required for both.

POST body: {"kind": "sms" | "call", "to": ["+1415...", ...], "body": "..." (sms) or
"message": "..." (call), "from": optional sender}. Every number meets the single-send policy up
front: refused ones are answered, never queued; duplicates are sent once.
"""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.broadcasts import endpoint

    return await endpoint.handle(req)
