"""The part every Twilio webhook shares: settings, signature check, logging, TwiML response.

A webhook function passes a responder that turns the verified request into TwiML; that is the
place for a user's own call or message logic. A responder may be a plain function or a
coroutine function (to await an async client); either way it must not block: `respond` runs on
the worker's event loop, which skips the thread-pool hop a sync function pays on every request.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping

import azure.functions as func

from shared import telemetry
from shared.common import logs, redact, responses, routes
from shared.common.settings import SettingsError
from shared.webhooks import signature, twiml
from shared.webhooks.settings import (
    SIGNING_SETTINGS,
    WebhookSettings,
    load_callback_settings,
    load_signing_settings,
    load_text_webhook_settings,
    load_webhook_settings,
)

# The settings a signature is checked with (WEBSITE_HOSTNAME: the origin, when PUBLIC_BASE_URL is
# unset): when one is broken, no request can be proven genuine.
SIGNING_BROKEN = frozenset({*SIGNING_SETTINGS, "WEBSITE_HOSTNAME"})
# The SID parameter of the text webhook (sms_url), which reads only the texts' settings (none of
# them malformed without failing closed); every other webhook answered with TwiML is a call's.
TEXTS = frozenset({"MessageSid"})

logger = logs.get_logger(__name__)

# Twilio's webhook bodies are a few kilobytes (an SMS body is at most 1,600 characters).
MAX_WEBHOOK_BODY = 64 * 1024


class Webhook:
    """A request that passed the signature check, with the webhooks' settings."""

    # Slotted, not a NamedTuple: on a webhook's first call (docs/benchmark.md, cold start).
    __slots__ = ("form", "query", "settings")

    def __init__(self, query: Mapping[str, str], form: signature.FormParams,
                 settings: WebhookSettings) -> None:
        self.query = query
        self.form = form
        self.settings = settings

    def param(self, name: str) -> str | None:
        """A parameter Twilio sent, from the body (POST) or the query string (GET)."""
        return self.form.first(name) or self.query.get(name)

    def outbound(self) -> bool:
        """A call Twilio placed for the app (make_call, a call broadcast: Direction
        `outbound-api`), not one a person made to the app's number (`inbound`)."""
        return (self.param("Direction") or "").startswith("outbound")

    def params(self) -> dict[str, str]:
        """Every parameter Twilio sent (the first value of a repeated one), body over query."""
        return {**self.query, **{name: values[0] for name, values in self.form.items() if values}}


Responder = Callable[[Webhook], str | Awaitable[str]]


def _verify(
    req: func.HttpRequest, function_name: str, sid_param: str,
    load: Callable[[], WebhookSettings], answers_safely: bool = False,
) -> tuple[Webhook | None, func.HttpResponse | None, str, SettingsError | None]:
    """(the verified webhook, None, sid, the settings problem a genuine request met or None) or
    (None, the refusal to send, sid, None); logs refusals and settings problems. Only a webhook
    that `answers_safely` (a call's: it has an apology to give) is checked with the signing
    settings alone when another of its settings is malformed; any other is refused."""
    body = req.get_body() or b""
    if len(body) > MAX_WEBHOOK_BODY:
        logger.warning(
            "%s %s=- outcome=refused reason=body over %d bytes",
            function_name,
            sid_param,
            MAX_WEBHOOK_BODY,
        )
        return None, responses.empty(413), "-", None

    broken = None
    try:
        settings = load()
    except SettingsError as error:
        # Fail closed: without its tokens (or the origin Twilio signs) no request can be proven
        # genuine, so none is answered.
        if set(error.names) & SIGNING_BROKEN or not answers_safely:
            logger.error("%s outcome=failed reason=settings: %s", function_name, error.describe())
            return None, responses.refused(), "-", None
        # Another setting (a voice name, say): the signature is still checked, with the signing
        # settings alone, and the caller decides what a genuine request gets.
        broken, settings = error, load_signing_settings()

    verdict = signature.verify(
        req,
        settings.auth_tokens,
        settings.trusted_origin,
        routes.path(function_name),
        settings.shared_key_secrets,
        settings.local_run,
    )
    query = dict(req.params)
    sid = redact.sid(verdict.form.first(sid_param) or query.get(sid_param))
    if not verdict.genuine:
        logger.warning(
            "%s %s=%s outcome=refused reason=%s", function_name, sid_param, sid, verdict.reason
        )
        telemetry.count_refusal(function_name, "signature")
        return None, responses.refused(), sid, None
    if broken is not None:
        logger.error("%s %s=%s outcome=failed reason=settings: %s",
                     function_name, sid_param, sid, broken.describe())
    hook = Webhook(query=query, form=verdict.form, settings=settings)
    telemetry.note_webhook(hook.param, query)  # its SIDs on the span, the link to their create
    return hook, None, sid, broken


async def respond(
    req: func.HttpRequest, function_name: str, sid_param: str, responder: Responder
) -> func.HttpResponse:
    """Answer a webhook with the responder's TwiML, or refuse it; one log line either way."""
    call = sid_param not in TEXTS
    load = load_webhook_settings if call else load_text_webhook_settings
    hook, refusal, sid, broken = _verify(req, function_name, sid_param, load, call)
    if hook is None:
        return refusal or responses.refused()
    if broken is not None:
        # A genuine call whose voice settings are malformed: an apology in Twilio's default
        # voice, never a 500 (Twilio would play the caller its own "application error").
        telemetry.count_webhook_failure(function_name, "settings")
        return responses.twiml(twiml.say(twiml.APOLOGY, hang_up=True))
    document = responder(hook)
    if not isinstance(document, str) and inspect.isawaitable(document):
        document = await document
    logger.info("%s %s=%s outcome=answered", function_name, sid_param, sid)
    return responses.twiml(document)


class Retry(Exception):
    """Raised by a callback handler that could not do its work now (storage down): the
    callback answers 503, so Twilio's debugger shows it and a retry can deliver it again."""


async def acknowledge(
    req: func.HttpRequest,
    function_name: str,
    sid_param: str,
    handler: Callable[[Webhook], Awaitable[str]],
) -> func.HttpResponse:
    """A status callback: verified like every webhook, handled, answered with an empty 204
    (Twilio reads nothing from the answer to a status callback) or 503 when the handler raises
    Retry. The handler returns the outcome word for the log line ("recorded", "duplicate")."""
    # CALLBACK_SETTINGS are the signing ones and CALL_FLOW (a path, not judged here): only a
    # signing setting can be malformed, and then no request can be proven genuine.
    hook, refusal, sid, _ = _verify(req, function_name, sid_param, load_callback_settings)
    if hook is None:
        return refusal or responses.refused()
    try:
        outcome = await handler(hook)
    except Retry as error:
        logger.error("%s %s=%s outcome=retry reason=%s", function_name, sid_param, sid, error)
        return responses.empty(503)
    logger.info("%s %s=%s outcome=%s", function_name, sid_param, sid, outcome)
    return responses.empty(204)
