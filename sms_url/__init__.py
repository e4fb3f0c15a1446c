"""sms_url: the webhook Twilio calls on an inbound SMS; answers with a reply message.

Opt-out keywords (STOP...) are honoured first, and HELP answered (shared/messageflows); any other
text gets SMS_REPLY. Put your own reply in shared/messageflows/inbound.py's `answer`, where
`reply` is chosen (docs/extending.md: a return before it skips recording the text and the reply
policy): `sms.param("Body")` is the text received and `sms.param("From")` the sender. It is
`async def` and must not block.
"""

import azure.functions as func

from shared import telemetry, webhooks


async def reply(sms: webhooks.Webhook) -> str:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.messageflows import inbound

    return await inbound.answer(sms)


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await webhooks.respond(req, "sms_url", "MessageSid", reply)
