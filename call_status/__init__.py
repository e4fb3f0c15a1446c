"""call_status: the status callback Twilio POSTs as a call placed by make_call goes through
initiated, ringing, answered and completed. Verified like every webhook, then recorded."""

import azure.functions as func

from shared import webhooks


async def record(callback: webhooks.Webhook) -> str:
    # Imported on the first invocation, not when the worker loads the function: the worker
    # loads every function of the app at start, and a webhook's cold start must not pay for
    # this callback's storage modules (docs/benchmark.md, cold start).
    from shared.records import callbacks

    # Your own reaction to a call's progress goes here (after it is stored).
    return await callbacks.keep("call", callback)


async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await webhooks.acknowledge(req, "call_status", "CallSid", record)
