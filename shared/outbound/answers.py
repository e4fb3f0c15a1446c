"""What a REST function (make_call, send_sms) answers when it does not get to a 201.

One place turns a settings error, a refusal and a failed Twilio request into the caller's JSON
answer and one log line, worded for the thing at stake ("the call", "the message") through a
`Subject`. Twilio's refusals keep their code and documentation link, so a caller can act on
them; its server errors and timeouts say the thing may exist all the same, because a create
request is never retried (a second one would call or text twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import azure.functions as func

from shared import telemetry
from shared.common import logs, redact, responses
from shared.common.responses import Refusal
from shared.common.settings import SettingsError
from shared.outbound.number_errors import ForbiddenDestination, InvalidNumber

logger = logs.get_logger(__name__)

# Twilio's 429 reaches us without its headers (the library drops them); a second is the
# pause its documentation suggests before trying again.
RETRY_AFTER_SECONDS = "1"
TWILIO_ERROR_DOCS = "https://www.twilio.com/docs/errors/{code}"

# What a function's parse step raises: each is answered with a status and its sentence.
REFUSALS = (Refusal, InvalidNumber, ForbiddenDestination)


@dataclass(frozen=True)
class Subject:
    """The words for what a function creates at Twilio."""

    function: str  # "make_call": starts every log line
    noun: str  # "call"
    create: str  # "place": Twilio failed to <create> the <noun>
    created: str  # "placed": the <noun> may still have been <created>
    log: str  # "the call log": where the console shows them
    # Sentences for Twilio error codes a caller can act on; other refusals keep Twilio's own.
    advice: Mapping[int, str] = field(default_factory=dict)


def settings_error(function: str, error: SettingsError) -> func.HttpResponse:
    logger.error("%s outcome=failed reason=settings: %s", function, error.describe())
    return responses.not_configured(error)


def refused(function: str, refusal: Exception) -> func.HttpResponse:
    """A refusal before Twilio: Refusal carries its status; a number that is not E.164 is 400;
    one the policy will not call or text is 403."""
    if isinstance(refusal, Refusal):
        status, sentence = refusal.status, refusal.error
        reason = refusal.reason or _REFUSAL_REASONS.get(status, f"refused-{status}")
    else:
        invalid = isinstance(refusal, InvalidNumber)
        status, sentence = (400 if invalid else 403), str(refusal)
        reason = "invalid-number" if invalid else "policy-destination"
    logger.warning("%s outcome=refused status=%d", function, status)
    telemetry.count_refusal(function, reason)
    return responses.json_error(status, sentence)


# The reason token of the refusals metric (shared.telemetry.names) for a Refusal that names
# none: its status says it.
_REFUSAL_REASONS = {400: "bad-request", 413: "too-large", 415: "content-type"}


def cannot_screen(function: str, error: Exception) -> func.HttpResponse:
    """The opt-out list could not be read (storage down or not configured): nothing is sent to
    someone who may have said STOP, so nothing is sent."""
    logger.error("%s outcome=failed reason=opt-outs-unreadable: %s", function, error)
    return responses.json_error(
        503,
        "The opt-out list cannot be read now (its storage is unavailable), so nothing was sent: "
        "try again shortly.",
        headers={"Retry-After": "5"},
    )


def twilio_failure(
    error: Exception, subject: Subject, to: str, timeout: float
) -> func.HttpResponse:
    """Map a failed create request to the caller's answer, and log it without secrets."""
    from twilio.base.exceptions import TwilioRestException, TwilioServiceException

    name, target = subject.function, redact.phone_number(to)
    may_exist = (
        f"The {subject.noun} may still have been {subject.created}: check {subject.log} in the "
        "Twilio console before trying again."
    )
    if isinstance(error, TimeoutError):
        logger.error("%s to=%s outcome=timeout after=%gs", name, target, timeout)
        return responses.json_error(
            504, f"Twilio did not answer within {timeout:g} seconds. {may_exist}"
        )
    if isinstance(error, TwilioRestException | TwilioServiceException):
        status = int(error.status or 0)
        code = error.code
        message = error.msg if isinstance(error, TwilioRestException) else error.detail
        message = str(message or "").removeprefix("Unable to create record: ")
        log = logger.error if status in (401, 403) or status >= 500 else logger.warning
        log("%s to=%s outcome=twilio-error status=%d code=%s", name, target, status, code)
        details = {"twilio_code": code, "more_info": _docs(code)}
        if status in (401, 403):
            return responses.json_error(
                502,
                "Twilio rejected the app's credentials: check TWILIO_ACCOUNT_SID and "
                "TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET).",
                **details,
            )
        if status == 429:
            return responses.json_error(
                503,
                f"Twilio is limiting the rate of {subject.noun}s from this account: try again "
                "shortly.",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
                **details,
            )
        if status >= 500:
            return responses.json_error(
                502,
                f"Twilio failed to {subject.create} the {subject.noun} (HTTP {status}). It may "
                f"still have been {subject.created}: check {subject.log} in the Twilio console "
                "before trying again.",
            )
        advice = subject.advice.get(code) if isinstance(code, int) else None
        return responses.json_error(
            422,
            advice or message or f"Twilio refused the {subject.noun} (HTTP {status}).",
            **details,
        )

    import aiohttp

    if isinstance(error, aiohttp.ClientConnectorError):
        # No connection was made (refused, DNS, TLS handshake): the request was never written,
        # so nothing was created, and trying again cannot call or text twice. 503 releases an
        # Idempotency-Key at once (shared.records.idempotency) instead of leaving it to a lookup.
        logger.error("%s to=%s outcome=unreachable error=%s", name, target, type(error).__name__)
        return responses.json_error(
            503,
            f"Could not connect to Twilio's API, so the {subject.noun} was not {subject.created}: "
            "try again shortly.",
            headers={"Retry-After": "5"},
        )
    if isinstance(error, aiohttp.ClientError | OSError):
        logger.error("%s to=%s outcome=unreachable error=%s", name, target, type(error).__name__)
        return responses.json_error(502, "Could not reach Twilio's API: try again later.")
    logger.error("%s to=%s outcome=failed error=%s", name, target, type(error).__name__)
    return responses.json_error(
        500,
        f"The {subject.noun} could not be {subject.created} because of an internal error.",
    )


def _docs(code: object) -> str | None:
    return TWILIO_ERROR_DOCS.format(code=code) if isinstance(code, int) else None
