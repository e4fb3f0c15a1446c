"""The part every Twilio webhook shares: settings, signature check, logging, TwiML response.

A webhook function passes a responder that turns the verified request into TwiML; that is the
place for a user's own call or message logic. A responder may be a plain function or a
coroutine function (to await an async client); either way it must not block: `respond` runs on
the worker's event loop, which skips the thread-pool hop a sync function pays on every request.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import azure.functions as func

from shared import logs, redact, responses, routes, signature
from shared.settings import SettingsError, WebhookSettings, load_webhook_settings

logger = logs.get_logger(__name__)

# Twilio's webhook bodies are a few kilobytes (an SMS body is at most 1,600 characters).
MAX_WEBHOOK_BODY = 64 * 1024


@dataclass(frozen=True)
class Webhook:
    """A request that passed the signature check."""

    query: Mapping[str, str]
    form: signature.FormParams
    settings: WebhookSettings

    def param(self, name: str) -> str | None:
        """A parameter Twilio sent, from the body (POST) or the query string (GET)."""
        return self.form.first(name) or self.query.get(name)


Responder = Callable[[Webhook], str | Awaitable[str]]


async def respond(
    req: func.HttpRequest, function_name: str, sid_param: str, responder: Responder
) -> func.HttpResponse:
    """Answer a webhook with the responder's TwiML, or refuse it; one log line either way."""
    body = req.get_body() or b""
    if len(body) > MAX_WEBHOOK_BODY:
        logger.warning(
            "%s %s=- outcome=refused reason=body over %d bytes",
            function_name,
            sid_param,
            MAX_WEBHOOK_BODY,
        )
        return responses.empty(413)

    try:
        settings = load_webhook_settings()
    except SettingsError as error:
        logger.error("%s outcome=failed reason=settings: %s", function_name, error.describe())
        # Fail closed: without its tokens no request can be proven genuine, so none is answered.
        if set(error.names) & {"TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY"}:
            return responses.refused()
        return responses.empty(500)

    verdict = signature.verify(
        req, settings.auth_tokens, settings.trusted_origin, routes.path(function_name)
    )
    query = dict(req.params)
    sid = redact.sid(verdict.form.first(sid_param) or query.get(sid_param))
    if not verdict.genuine:
        logger.warning(
            "%s %s=%s outcome=refused reason=%s", function_name, sid_param, sid, verdict.reason
        )
        return responses.refused()

    document = responder(Webhook(query=query, form=verdict.form, settings=settings))
    if inspect.isawaitable(document):
        document = await document
    logger.info("%s %s=%s outcome=answered", function_name, sid_param, sid)
    return responses.twiml(document)
