"""make_call: POST /api/make_call (function key required) places an outbound call via Twilio.

Body: {"to": "+14155550100", "from": optional caller ID, "message": optional greeting}. With an
Idempotency-Key header, one key places at most one call (shared/idempotency.py).
Async, so one worker serves many calls while each waits on Twilio's API.
"""

import datetime

import azure.functions as func

from shared import calls, idempotency, request_body, responses, rest_answers
from shared.settings import CallSettings, SettingsError, load_call_settings


async def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        settings = load_call_settings()
    except SettingsError as error:
        return rest_answers.settings_error("make_call", error)

    async def attempt(claim: idempotency.Claim | None) -> func.HttpResponse:
        return await place(req, settings, claim)

    async def lookup(
        to: str, from_: str | None, since: datetime.datetime
    ) -> func.HttpResponse | None:
        found = await calls.find(settings, to, from_, since)
        if found is None:
            return None
        return responses.json_body(calls.answer(found, await calls.record(found)), 201)

    return await idempotency.guarded(req, "make_call", attempt, lookup)


async def place(
    req: func.HttpRequest, settings: CallSettings, claim: idempotency.Claim | None
) -> func.HttpResponse:
    try:
        call = calls.parse(request_body.read(req, calls.FIELDS), settings)
    except rest_answers.REFUSALS as refusal:
        return rest_answers.refused("make_call", refusal)

    if claim is not None and (refusal := await claim.sending(call.to, call.from_)):
        return refusal
    try:
        created = await calls.place(call, settings)
    except Exception as error:  # every failure becomes a JSON answer
        return rest_answers.twilio_failure(
            error, calls.SUBJECT, call.to, settings.rest.http_timeout
        )
    recorded = await calls.record(created, call.message)
    return responses.json_body(calls.answer(created, recorded), 201)
