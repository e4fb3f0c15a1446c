"""make_call: read the request, apply the toll-fraud policy, place the call through Twilio.

Everything that can be refused is refused before Twilio hears of it. A call creation is never
retried: if Twilio did not answer in time the call may still have been placed, and a second
POST would place a second one.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlencode

import azure.functions as func

from shared import logs, redact, responses, routes, twilio_client
from shared.messages import MAX_MESSAGE_LENGTH, clean_text
from shared.responses import Refusal
from shared.settings import CallSettings, SettingsError, load_call_settings
from shared.signature import FORM_CONTENT_TYPE, parse_form

logger = logs.get_logger(__name__)

MAX_BODY_BYTES = 16 * 1024
FIELDS = ("to", "from", "message")
# Where Twilio fetches the call's TwiML: host.json's routePrefix + voice_url's route.
VOICE_URL_PATH = routes.path("voice_url")
# The longest URL Twilio accepts in a URL parameter (its error 21609 names 4,000 characters).
MAX_TWILIO_URL_LENGTH = 4000
# Twilio's 429 reaches us without its headers (the library drops them); a second is the
# pause its documentation suggests before trying again.
RETRY_AFTER_SECONDS = "1"
TWILIO_ERROR_DOCS = "https://www.twilio.com/docs/errors/{code}"


@dataclass(frozen=True)
class CallRequest:
    to: str
    from_: str
    message: str | None


def _read_fields(req: func.HttpRequest) -> dict[str, str]:
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise Refusal(413, f"The request body is larger than {MAX_BODY_BYTES // 1024} KB.")
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            # RecursionError: "[" * 15000 nests deeper than the parser's stack; still bad JSON.
            raise Refusal(400, "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise Refusal(400, 'The JSON body must be an object, like {"to": "+14155550100"}.')
    elif content_type == FORM_CONTENT_TYPE:
        try:
            form = parse_form(body)
        except ValueError:
            raise Refusal(400, "The request body is not valid UTF-8 form data.") from None
        repeated = sorted(name for name, values in form.items() if len(values) > 1)
        if repeated:
            raise Refusal(400, f"The field '{repeated[0]}' is given more than once.")
        data = {name: values[0] for name, values in form.items()}
    else:
        raise Refusal(
            415, "Send the body as application/json or application/x-www-form-urlencoded."
        )

    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        shown = unknown[0][:40]
        raise Refusal(400, f"Unknown field '{shown}': the fields are to, from and message.")
    for name, value in data.items():
        if not isinstance(value, str):
            raise Refusal(400, f"The field '{name}' must be a string.")
    return data


def _read_message(raw: str | None) -> str | None:
    if raw is None:
        return None
    if len(raw) > MAX_MESSAGE_LENGTH:
        raise Refusal(400, f"'message' is longer than {MAX_MESSAGE_LENGTH} characters.")
    return clean_text(raw) or None


def parse_call_request(req: func.HttpRequest, settings: CallSettings) -> CallRequest:
    """Raises Refusal with the status and sentence the caller should get."""
    # phonenumbers' import is deferred to the first call, like the REST client's: every
    # function module is imported at a cold start, and the webhooks never need it.
    from shared import numbers

    data = _read_fields(req)
    if not data.get("to"):
        raise Refusal(400, "The field 'to' is required: the E.164 number to call.")
    try:
        to = numbers.parse_e164(data["to"], "to")
    except numbers.InvalidNumber as error:
        raise Refusal(400, str(error)) from None
    try:
        numbers.check_destination(to, settings.allowed_countries)
    except numbers.ForbiddenDestination as error:
        raise Refusal(403, str(error)) from None

    from_ = settings.phone_number
    if data.get("from"):
        try:
            from_ = numbers.parse_e164(data["from"], "from").e164
        except numbers.InvalidNumber as error:
            raise Refusal(400, str(error)) from None
        if from_ != settings.phone_number and from_ not in settings.caller_ids:
            raise Refusal(
                403, "'from' must be TWILIO_PHONE_NUMBER or one of the numbers in CALLER_IDS."
            )
    return CallRequest(to=to.e164, from_=from_, message=_read_message(data.get("message")))


def voice_url(origin: str, message: str | None) -> str:
    url = origin + VOICE_URL_PATH
    return f"{url}?{urlencode({'message': message})}" if message else url


async def place_call(req: func.HttpRequest) -> func.HttpResponse:
    """The whole of make_call: a 201 with the call, or a JSON error saying what went wrong."""
    try:
        settings = load_call_settings()
    except SettingsError as error:
        logger.error("make_call outcome=failed reason=settings: %s", error.describe())
        return responses.json_error(
            500, f"The app is not configured: {error.describe()}.", settings=error.names
        )

    try:
        call = parse_call_request(req, settings)
    except Refusal as refusal:
        logger.warning("make_call outcome=refused status=%d", refusal.status)
        return responses.json_error(refusal.status, refusal.error)

    # The settings check made sure the origin is known: never one taken from the request.
    url = voice_url(settings.public_origin or "", call.message)
    if len(url) > MAX_TWILIO_URL_LENGTH:
        logger.warning("make_call outcome=refused status=400 reason=url-too-long")
        return responses.json_error(
            400,
            f"'message' is too long to travel in the call's URL: Twilio takes URLs of at most "
            f"{MAX_TWILIO_URL_LENGTH:,} characters, and this one would be {len(url):,} once "
            "encoded (a character outside ASCII takes 6 to 12). Shorten the message.",
        )

    client = twilio_client.get_client(settings)
    target = redact.phone_number(call.to)
    try:
        created = await asyncio.wait_for(
            client.calls.create_async(
                to=call.to,
                from_=call.from_,
                url=url,
                method="POST",
            ),
            timeout=settings.http_timeout,
        )
    except Exception as error:  # every failure becomes a JSON answer
        return _twilio_failure(error, target, settings.http_timeout)

    logger.info("make_call to=%s outcome=created CallSid=%s", target, redact.sid(created.sid))
    # twilio-python names the call's "from" field `_from` (`from` is a Python keyword).
    return responses.json_body(
        {"sid": created.sid, "status": created.status, "to": created.to, "from": created._from},
        201,
    )


def _twilio_failure(error: Exception, target: str, timeout: float) -> func.HttpResponse:
    """Map a failed call creation to the caller's answer, and log it without secrets."""
    from twilio.base.exceptions import TwilioRestException, TwilioServiceException

    if isinstance(error, TimeoutError):
        logger.error("make_call to=%s outcome=timeout after=%gs", target, timeout)
        return responses.json_error(
            504,
            f"Twilio did not answer within {timeout:g} seconds. The call may still have been "
            "placed: check the call log in the Twilio console before trying again.",
        )
    if isinstance(error, TwilioRestException | TwilioServiceException):
        status = int(error.status or 0)
        code = error.code
        message = error.msg if isinstance(error, TwilioRestException) else error.detail
        message = str(message or "").removeprefix("Unable to create record: ")
        logger_method = logger.error if status in (401, 403) or status >= 500 else logger.warning
        logger_method(
            "make_call to=%s outcome=twilio-error status=%d code=%s", target, status, code
        )
        if status in (401, 403):
            return responses.json_error(
                502,
                "Twilio rejected the app's credentials: check TWILIO_ACCOUNT_SID and "
                "TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET).",
                twilio_code=code,
                more_info=_docs(code),
            )
        if status == 429:
            return responses.json_error(
                503,
                "Twilio is limiting the rate of calls from this account: try again shortly.",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
                twilio_code=code,
                more_info=_docs(code),
            )
        if status >= 500:
            return responses.json_error(
                502,
                f"Twilio failed to place the call (HTTP {status}). It may still have been "
                "placed: check the call log in the Twilio console before trying again.",
            )
        return responses.json_error(
            422,
            message or f"Twilio refused the call (HTTP {status}).",
            twilio_code=code,
            more_info=_docs(code),
        )

    import aiohttp

    if isinstance(error, aiohttp.ClientError | OSError):
        logger.error("make_call to=%s outcome=unreachable error=%s", target, type(error).__name__)
        return responses.json_error(502, "Could not reach Twilio's API: try again later.")
    logger.error("make_call to=%s outcome=failed error=%s", target, type(error).__name__)
    return responses.json_error(500, "The call could not be placed because of an internal error.")


def _docs(code: object) -> str | None:
    return TWILIO_ERROR_DOCS.format(code=code) if isinstance(code, int) else None
