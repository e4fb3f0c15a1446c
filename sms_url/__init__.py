"""sms_url: the webhook Twilio calls on an inbound SMS; answers with a reply message.

Put your own message logic in `reply`: `sms.param("Body")` is the text received and
`sms.param("From")` the sender. As in voice_url, `reply` may be `async def` and must not block.
"""

import azure.functions as func

from shared import webhooks


def reply(sms: webhooks.Webhook) -> str:
    return webhooks.twiml.message(sms.settings.sms_reply)


async def main(req: func.HttpRequest) -> func.HttpResponse:
    return await webhooks.respond(req, "sms_url", "MessageSid", reply)
