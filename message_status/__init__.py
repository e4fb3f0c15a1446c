"""message_status: the status callback Twilio POSTs as a message sent by send_sms goes through
queued, sent, delivered, undelivered or failed. Verified like every webhook, then recorded."""

import azure.functions as func

from shared import telemetry, webhooks


async def record(callback: webhooks.Webhook) -> str:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.records import callbacks

    # Your own reaction to a delivery report goes here (after it is stored).
    return await callbacks.keep("message", callback)


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await webhooks.acknowledge(req, "message_status", "MessageSid", record)
