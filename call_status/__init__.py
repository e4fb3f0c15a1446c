"""call_status: the status callback Twilio POSTs as a call placed by make_call goes through
initiated, ringing, answered and completed. Verified like every webhook, then recorded."""

import azure.functions as func

from shared import telemetry, webhooks


async def record(callback: webhooks.Webhook) -> str:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.records import callbacks

    # Your own reaction to a call's progress goes here (after it is stored).
    return await callbacks.keep("call", callback)


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await webhooks.acknowledge(req, "call_status", "CallSid", record)
