"""call_status: the status callback Twilio POSTs as a call placed by make_call goes through
initiated, ringing, answered and completed. Verified like every webhook, then recorded."""

import azure.functions as func

from shared import status_events, webhooks


async def record(callback: webhooks.Webhook) -> str:
    # Your own reaction to a call's progress goes here (after it is stored).
    return await status_events.store("call", callback)


async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await webhooks.acknowledge(req, "call_status", "CallSid", record)
