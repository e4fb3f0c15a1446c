"""client_voice: the TwiML App's voice URL, which Twilio requests (signed) when the console's
softphone places a call: a phone number within make_call's policy or another browser
(`client:NAME`) is dialled; anything else is refused aloud."""

import azure.functions as func

from shared import telemetry, webhooks


def dial(call: webhooks.Webhook) -> str:
    from shared.browsercalls import dialing  # on first use, not at load (docs/benchmark.md)

    return dialing.answer(call)


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await webhooks.respond(req, "client_voice", "CallSid", dial)
