"""make_call: POST /api/make_call (function key required) places an outbound call via Twilio.

Body: {"to": "+14155550100", "from": optional caller ID, "message": optional greeting}.
Async, so one worker serves many calls while each waits on Twilio's API.
"""

import azure.functions as func

from shared import calls, request_body, responses, rest_answers
from shared.settings import SettingsError, load_call_settings


async def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        settings = load_call_settings()
    except SettingsError as error:
        return rest_answers.settings_error("make_call", error)

    try:
        call = calls.parse(request_body.read(req, calls.FIELDS), settings)
    except rest_answers.REFUSALS as refusal:
        return rest_answers.refused("make_call", refusal)

    try:
        created = await calls.place(call, settings)
    except Exception as error:  # every failure becomes a JSON answer
        return rest_answers.twilio_failure(
            error, calls.SUBJECT, call.to, settings.rest.http_timeout
        )
    recorded = await calls.record(created, call)
    return responses.json_body(calls.answer(created, recorded), 201)
