"""send_sms: POST /api/send_sms (function key required) sends a text message via Twilio.

Body: {"to": "+14155550100", "body": "text", "from": optional sender, "media_url": optional
https URL or list of them (MMS)}. With an Idempotency-Key header, one key sends at most one
message (shared/idempotency.py). Async, like make_call.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared import idempotency
    from shared.settings import SmsSettings


async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on the first invocation, not when the worker loads the function: the worker
    # loads every function of the app at start, and a webhook's cold start must not pay for
    # this function's modules (docs/benchmark.md, cold start).
    from shared import idempotency, responses, rest_answers, sms
    from shared.settings import SettingsError, load_sms_settings

    try:
        settings = load_sms_settings()
    except SettingsError as error:
        return rest_answers.settings_error("send_sms", error)

    async def attempt(claim: idempotency.Claim | None) -> func.HttpResponse:
        return await send(req, settings, claim)

    async def lookup(
        to: str, from_: str | None, since: datetime.datetime
    ) -> func.HttpResponse | None:
        found = await sms.find(settings, to, from_, since)
        if found is None:
            return None
        return responses.json_body(sms.answer(found, await sms.record(found)), 201)

    return await idempotency.guarded(req, "send_sms", attempt, lookup)


async def send(
    req: func.HttpRequest, settings: SmsSettings, claim: idempotency.Claim | None
) -> func.HttpResponse:
    from shared import request_body, responses, rest_answers, sms

    try:
        fields = request_body.read(req, sms.FIELDS, sms.LISTS)
        message = sms.parse(fields, settings)
    except rest_answers.REFUSALS as refusal:
        return rest_answers.refused("send_sms", refusal)

    if claim is not None and (refusal := await claim.sending(message.to, message.from_)):
        return refusal
    try:
        created = await sms.send(message, settings)
    except Exception as error:  # every failure becomes a JSON answer
        return rest_answers.twilio_failure(
            error, sms.SUBJECT, message.to, settings.rest.http_timeout
        )
    recorded = await sms.record(created, message)
    return responses.json_body(sms.answer(created, recorded), 201)
