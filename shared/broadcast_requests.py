"""POST /api/broadcasts and GET /api/broadcasts/{id}, behind the broadcasts function folder.

Starting one checks every number against the single-send policy up front (sms.parse or
calls.parse): refused ones are answered, never queued; duplicates are sent once; the rest go to
shared.broadcasts, which records them and queues them in chunks. Showing one reads its counts
and, a page at a time, its recipients.

This module is imported on the first broadcasts request, not when the worker loads the function
folder: the worker loads every function of the app at start, and a webhook's cold start must not
compile or run it (docs/benchmark.md, cold start).
"""

from __future__ import annotations

import asyncio
from typing import Any

import azure.functions as func

from shared import broadcasts, calls, records, request_body, responses, rest_answers, sms, storage
from shared.number_errors import ForbiddenDestination, InvalidNumber
from shared.responses import Refusal
from shared.settings import SettingsError, load_call_settings, load_sms_settings


async def handle(req: func.HttpRequest) -> func.HttpResponse:
    """POST starts a broadcast; GET /api/broadcasts/{id} shows one."""
    broadcast_id = req.route_params.get("id")
    if req.method.upper() == "GET":
        if not broadcast_id:
            return responses.json_error(400, "Name the broadcast: GET /api/broadcasts/{id}.")
        return await show(req, broadcast_id)
    if broadcast_id:
        return responses.json_error(405, "Start a broadcast with POST /api/broadcasts.")
    return await start(req)


async def start(req: func.HttpRequest) -> func.HttpResponse:
    try:
        fields = request_body.read(
            req, broadcasts.FIELDS, frozenset({"to"}), broadcasts.MAX_BODY_BYTES
        )
        kind = request_body.text(fields, "kind")
        if kind not in broadcasts.KINDS:
            raise Refusal(400, "'kind' must be sms or call.")
        numbers = broadcasts.recipients(fields.get("to"))
        settings: Any = load_sms_settings() if kind == "sms" else load_call_settings()
    except SettingsError as error:
        return rest_answers.settings_error("broadcasts", error)
    except Refusal as refusal:
        return rest_answers.refused("broadcasts", refusal)

    text_field = "body" if kind == "sms" else "message"
    text = request_body.text(fields, text_field)
    sender = request_body.text(fields, "from")
    broadcast_id = broadcasts.new_id()
    accepted: dict[str, broadcasts.Task] = {}
    refused: list[dict[str, str]] = []
    for number in numbers:
        one: dict[str, str | list[str]] = {"to": number}
        if text is not None:
            one[text_field] = text
        if sender is not None:
            one["from"] = sender
        try:
            # The single-send policy, per number: sms.parse or calls.parse.
            checked = sms.parse(one, settings) if kind == "sms" else calls.parse(one, settings)
        except (InvalidNumber, ForbiddenDestination) as error:
            refused.append({"to": number, "error": str(error)})
            continue
        except Refusal as refusal:  # the text or the sender: the same for every number
            return rest_answers.refused("broadcasts", refusal)
        accepted.setdefault(
            checked.to,
            broadcasts.Task(broadcast_id, kind, checked.to, sender and checked.from_, text),
        )

    tasks = list(accepted.values())
    try:
        queued = await asyncio.wait_for(
            broadcasts.accept(broadcast_id, kind, text, sender, tasks, refused),
            broadcasts.ACCEPT_DEADLINE,
        )
    except (TimeoutError, storage.StorageUnavailable, SettingsError) as error:
        return _unavailable(error)
    body = {
        "id": broadcast_id,
        "accepted": queued,
        "refused": refused,
        "status_url": f"/api/broadcasts/{broadcast_id}",
    }
    if queued < len(tasks):
        return responses.json_body(
            {
                **body,
                "error": f"Only {queued} of {len(tasks)} recipients could be queued: "
                "storage failed part way; the others are recorded as failed, not sent.",
            },
            503,
        )
    return responses.json_body(body, 202)


async def show(req: func.HttpRequest, broadcast_id: str) -> func.HttpResponse:
    raw_limit = req.params.get("limit") or "100"
    if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= 1000):
        return responses.json_error(400, "'limit' must be a whole number from 1 to 1000.")
    token = None
    if req.params.get("continuation"):
        try:
            token = records.decode_token(req.params["continuation"])
        except ValueError:
            return responses.json_error(400, "'continuation' is not a token this app gave out.")
    try:
        found = await storage.within_deadline(
            broadcasts.status(broadcast_id, int(raw_limit), token)
        )
    except (storage.StorageUnavailable, SettingsError) as error:
        return _unavailable(error)
    if found is None:
        return responses.json_error(404, f"No broadcast {broadcast_id[:40]} is recorded.")
    return responses.json_body(found, 200)


def _unavailable(error: Exception) -> func.HttpResponse:
    if isinstance(error, SettingsError):
        return rest_answers.settings_error("broadcasts", error)
    rest_answers.logger.error("broadcasts outcome=unavailable reason=%s", error)
    return responses.json_error(
        503, "Storage is unavailable: try again shortly.", headers={"Retry-After": "5"}
    )
