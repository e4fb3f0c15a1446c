"""send_sms: POST /api/send_sms (function key required) sends a text message via Twilio.

Body: {"to": "+14155550100", "body": "text", "from": optional sender, "media_url": optional
https URL or list of them (MMS)}. Async, like make_call.
"""

import azure.functions as func

from shared import request_body, responses, rest_answers, sms
from shared.settings import SettingsError, load_sms_settings


async def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        settings = load_sms_settings()
    except SettingsError as error:
        return rest_answers.settings_error("send_sms", error)

    try:
        fields = request_body.read(req, sms.FIELDS, sms.LISTS)
        message = sms.parse(fields, settings)
    except rest_answers.REFUSALS as refusal:
        return rest_answers.refused("send_sms", refusal)

    try:
        created = await sms.send(message, settings)
    except Exception as error:  # every failure becomes a JSON answer
        return rest_answers.twilio_failure(
            error, sms.SUBJECT, message.to, settings.rest.http_timeout
        )
    recorded = await sms.record(created, message)
    return responses.json_body(sms.answer(created, recorded), 201)
