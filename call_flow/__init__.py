"""call_flow: the webhook every URL in a call flow's TwiML names (a menu's digits, a dial's
outcome, a recording's end, the next step). Signed by Twilio like voice_url, then answered with
the TwiML of where the call goes next (shared/callflows/walk.py)."""

import azure.functions as func

from shared import telemetry, webhooks


def resume(call: webhooks.Webhook) -> str:
    from shared.callflows import walk  # on first use, not at load (docs/benchmark.md)

    return walk.resume(call)


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await webhooks.respond(req, "call_flow", "CallSid", resume)
