"""The opt-outs over HTTP (function key required): GET /api/optouts lists who opted out
(`?sender=` one of the app's numbers or its Messaging Service; `?limit=`, `?continuation=` as
for the records), POST /api/optouts/clear clears one by hand, kept with who cleared it and why.

Clearing is for an opt-out the person did not mean for this app (a mistaken 21610, a test): the
person's own START clears it at Twilio too, this only in the app (docs/inbound-texts.md).
"""

from __future__ import annotations

import re

import azure.functions as func

from shared.common import logs, redact, responses, routes
from shared.common.settings import SettingsError, load_app_service_auth
from shared.console import signin
from shared.records import optouts, queries, storage
from shared.records.storage import StorageUnavailable

logger = logs.get_logger(__name__)

SENDER = re.compile(r"\+[1-9][0-9]{1,14}|MG[0-9a-fA-F]{32}")
NUMBER = re.compile(r"\+[1-9][0-9]{1,14}")
MAX_REASON = 200


async def handle(req: func.HttpRequest) -> func.HttpResponse:
    if refused := signin.refusal(req):
        return refused
    action = req.route_params.get("action")
    if req.method == "GET" and action is None:
        return await listing(req)
    if req.method == "POST" and action == "clear":
        return await clear(req)
    return responses.json_error(404, "Use GET /api/optouts or POST /api/optouts/clear.")


async def listing(req: func.HttpRequest) -> func.HttpResponse:
    query = queries.page_query(req, queries.DEFAULT_LIMIT, queries.MAX_LIMIT)
    if isinstance(query, func.HttpResponse):
        return query
    limit, token = query
    sender = req.params.get("sender") or None
    if sender is not None and not SENDER.fullmatch(sender):
        return responses.json_error(400, "'sender' must be one of the app's numbers in E.164 "
                                         "(like +14155550100) or a Messaging Service SID.")
    try:
        items, next_token = await storage.within_deadline(optouts.page(sender, limit, token))
    except (SettingsError, StorageUnavailable) as error:
        return _unavailable(error)
    encoded = queries.store.encode_token(next_token)
    following = queries.next_url(routes.path("optouts"), limit, encoded, sender=sender)
    return responses.json_body({"optouts": items, "next": encoded, "next_url": following}, 200)


async def clear(req: func.HttpRequest) -> func.HttpResponse:
    from shared.common.responses import Refusal
    from shared.outbound import request_body

    try:  # JSON or a form, at most 16 KB, strings only: as make_call and send_sms read theirs
        fields = request_body.read(req, ("sender", "number", "reason"))
    except Refusal as refusal:
        return responses.json_error(refusal.status, refusal.error)
    sender = request_body.text(fields, "sender") or ""
    number = request_body.text(fields, "number") or ""
    reason = request_body.text(fields, "reason") or ""
    if not SENDER.fullmatch(sender):
        return responses.json_error(400, "'sender' must be one of the app's numbers in E.164 "
                                         "or a Messaging Service SID.")
    if not NUMBER.fullmatch(number):
        return responses.json_error(400, "'number' must be the person's number in E.164.")
    if len(reason) > MAX_REASON or not reason.isprintable():
        return responses.json_error(400, f"'reason' must be text of at most {MAX_REASON} "
                                         "characters.")
    who = _who(req)
    try:
        cleared = await storage.within_deadline(optouts.clear(sender, number, who, reason))
    except (SettingsError, StorageUnavailable) as error:
        return _unavailable(error)
    if cleared is None:
        return responses.json_error(
            404, f"{number} is not opted out of texts from {sender}. A text to them is also "
            "refused while they stay opted out of another of the app's numbers: GET "
            "/api/optouts lists each sender they opted out of.")
    logger.warning("optouts sender=%s to=%s outcome=cleared by=%s", redact.phone_number(sender),
                   redact.phone_number(number), who)
    return responses.json_body(cleared, 200)




def _who(req: func.HttpRequest) -> str:
    """Who clears: the signed-in user App Service authentication names, else a key holder. The
    header is believed only with App Service authentication on: otherwise the caller wrote it."""
    name = (req.headers.get("x-ms-client-principal-name") or "").strip()
    if load_app_service_auth() and name and name.isprintable():
        return name[:100]
    return "a function key holder"


def _unavailable(error: Exception) -> func.HttpResponse:
    if isinstance(error, storage.StorageRefused):  # storage will never take it: not worth a retry
        logger.warning("optouts outcome=refused status=400 reason=%s", error)
        return responses.json_error(
            400, "Storage cannot take that request: a value in it is malformed (the "
                 "'continuation', or a number or sender).")
    if isinstance(error, SettingsError):
        logger.error("optouts outcome=failed reason=settings: %s", error.describe())
        return responses.not_configured(error)
    logger.error("optouts outcome=unavailable reason=%s", error)
    return responses.json_error(503, "The opt-outs cannot be read now: storage is unavailable. "
                                     "Try again shortly.", headers={"Retry-After": "5"})
