"""make_call: POST /api/make_call (function key required) places an outbound call via Twilio.

Body: {"to": "+14155550100", "from": optional caller ID, "message": optional greeting}. With an
Idempotency-Key header, one key places at most one call (shared/idempotency.py).
Async, so one worker serves many calls while each waits on Twilio's API.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared import idempotency
    from shared.settings import CallSettings


async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on the first invocation, not when the worker loads the function: the worker
    # loads every function of the app at start, and a webhook's cold start must not pay for
    # this function's modules (docs/benchmark.md, cold start).
    from shared import calls, idempotency, responses, rest_answers
    from shared.settings import SettingsError, load_call_settings

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
    from shared import calls, request_body, responses, rest_answers

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
