"""The benchmark's floor: the least an HTTP function can do, through the same host and worker.

A benchmark fixture, not app code: a constant TwiML string (a literal is fine here), no
signature check, no settings. Async like voice_url and sms_url, so it takes the same path
through the worker (its event loop, no thread-pool hop); what the webhooks cost above this is
our code.
"""

import azure.functions as func

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hello Monkey!</Say></Response>'


async def main(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(TWIML, status_code=200, mimetype="text/xml", charset="utf-8")
