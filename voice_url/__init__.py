"""voice_url: the webhook Twilio calls when a call connects; answers with a spoken greeting.

Put your own call logic in `greet` (gather digits, dial, record...) with
twilio.twiml.voice_response.VoiceResponse, or in a helper of shared/webhooks/twiml.py
(`webhooks.twiml`). `main` is async (no thread-pool hop per request), so `greet` must not
block: make it `async def` to await an async client, or hand a blocking call to
`asyncio.to_thread`.
"""

import azure.functions as func

from shared import telemetry, webhooks


def greet(call: webhooks.Webhook) -> str:
    # CALL_FLOW is for people who ring the number. A call the app placed (make_call, a call
    # broadcast: Twilio's Direction outbound-api, which the signature covers) says its message.
    if call.settings.call_flow and not call.outbound():
        import shared.callflows.walk as walk  # on first use, not at load (docs/benchmark.md)

        return walk.start(call)
    # make_call passes its `message` in the URL query, which the signature covers.
    text = webhooks.clean_text(call.query.get("message") or "") or call.settings.voice_greeting
    return webhooks.twiml.say(text, call.settings.voice_name, call.settings.voice_language)


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await webhooks.respond(req, "voice_url", "CallSid", greet)
