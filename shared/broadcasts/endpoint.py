"""POST /api/broadcasts and GET /api/broadcasts/{id}, behind the broadcasts function folder.

Starting one checks every number against the single-send policy up front (sms.parse or
calls.parse; a text's opted-out recipients too): refused ones are answered, never queued;
duplicates are sent once; the rest go to shared.broadcasts.starting, which records them and
queues them in chunks. Showing one reads its
counts and, a page at a time, its recipients. With an Idempotency-Key, the key's row carries the
broadcast's id, so a retry replays the answer or carries on the same broadcast.
"""

from __future__ import annotations

import math
from typing import Any

import azure.functions as func

from shared.broadcasts import model, starting, table
from shared.broadcasts.settings import load_broadcast_settings
from shared.common import responses, routes
from shared.common.responses import Refusal
from shared.common.settings import SettingsError
from shared.console import signin
from shared.outbound import answers, calls, request_body, sms
from shared.outbound.number_errors import ForbiddenDestination, InvalidNumber
from shared.outbound.settings import load_call_settings, load_sms_settings
from shared.records import idempotency, optouts, queries, storage

FUNCTION = "broadcasts"
BROADCAST_ID = "BroadcastId"  # on the Idempotency-Key's row


async def handle(req: func.HttpRequest) -> func.HttpResponse:
    """POST starts a broadcast; GET /api/broadcasts/{id} shows one, GET /api/broadcasts lists
    them."""
    if refused := signin.refusal(req):
        return refused
    broadcast_id = req.route_params.get("id")
    if req.method.upper() == "GET":
        if not broadcast_id:
            return await listing(req)
        return await show(req, broadcast_id)
    if broadcast_id:
        return responses.json_error(405, "Start a broadcast with POST /api/broadcasts.")
    # With an Idempotency-Key, the key's row carries the broadcast's id: a retry after an
    # answer that never arrived (or a request that died part way) replays the answer or carries
    # on the same broadcast, and never queues its recipients under a second id.
    return await idempotency.guarded(
        req, FUNCTION, lambda claim: start(req, claim), _no_lookup,
        carry={BROADCAST_ID: model.new_id()},
    )


async def _no_lookup(*_: object) -> None:
    """A broadcast's key never reaches the `sending` state that needs a lookup."""
    return None


def _read(req: func.HttpRequest) -> tuple[str, dict[str, Any], Any]:
    """(kind, fields, settings) for the body; raises Refusal or SettingsError. The same fields
    as send_sms (sms) or make_call (call), with `to` a list, and `kind`."""
    fields = request_body.read(
        req, model.ALL_FIELDS, frozenset({"to", "media_url"}), model.MAX_BODY_BYTES
    )
    kind = request_body.text(fields, "kind")
    if kind not in model.KINDS:
        raise Refusal(400, "'kind' must be sms or call.")
    allowed = model.FIELDS[kind]
    other = sorted(set(fields) - set(allowed))
    if other:
        names = ", ".join(allowed[:-1]) + f" and {allowed[-1]}"
        raise Refusal(400, f"Unknown field '{other[0]}' for a {kind} broadcast: the fields are "
                           f"{names}.")
    model.recipients(fields.get("to"))
    # broadcast_send reads the pace as it sends: a malformed one is named here, before anything
    # is accepted, not in the queue function's log after every recipient failed.
    problems: list[tuple[str, str]] = []
    try:
        settings: Any = load_sms_settings() if kind == "sms" else load_call_settings()
    except SettingsError as error:
        problems += error.problems
    try:
        load_broadcast_settings()
    except SettingsError as error:
        problems += error.problems
    if problems:
        raise SettingsError(problems)
    return kind, fields, settings


async def start(req: func.HttpRequest, claim: idempotency.Claim | None) -> func.HttpResponse:
    try:
        kind, fields, settings = _read(req)
        sender = request_body.text(fields, "from")
        # The sender is the same for every number: a bad one is one 400 (or 403), not a refusal
        # of every entry. Kept only when given (else each send uses the configured number).
        if sender is not None:
            sender = sms.sender(sender, settings) if kind == "sms" else calls.caller_id(
                sender, settings
            )
    except SettingsError as error:
        return answers.settings_error(FUNCTION, error)
    except answers.REFUSALS as refusal:
        return answers.refused(FUNCTION, refusal)

    text_field = "body" if kind == "sms" else "message"
    text = request_body.text(fields, text_field)
    media = fields.get("media_url")
    media_urls = [media] if isinstance(media, str) else list(media or [])
    accepted: dict[str, None] = {}
    refused: dict[str, str] = {}
    for entry in fields["to"]:
        if entry in refused:
            continue
        if not entry.strip():
            refused[entry] = "An empty entry: not a phone number."
            continue
        one: dict[str, str | list[str]] = {"to": entry}
        if text is not None:
            one[text_field] = text
        if sender is not None:
            one["from"] = sender
        if media_urls:
            one["media_url"] = media_urls
        try:
            # The single-send policy, per number: sms.parse or calls.parse.
            checked = sms.parse(one, settings) if kind == "sms" else calls.parse(one, settings)
        except (InvalidNumber, ForbiddenDestination) as error:
            refused[entry] = str(error)
            continue
        except Refusal as refusal:  # the text or the media: the same for every number
            return answers.refused(FUNCTION, refusal)
        accepted.setdefault(checked.to)

    if kind == "sms" and accepted:
        try:
            opted_out = await _opted_out(sender, settings)
        except (storage.StorageUnavailable, SettingsError) as error:
            return _unavailable(error)  # nothing was queued: trying again is safe
        for to in [to for to in accepted if to in opted_out]:
            del accepted[to]
            refused[to] = optouts.refusal(to)

    broadcast_id = claim.entity[BROADCAST_ID] if claim else model.new_id()
    broadcast = model.Broadcast.new(broadcast_id, kind, text, sender, tuple(media_urls))
    refusals = [{"to": model.shown(entry), "error": e} for entry, e in refused.items()]
    try:
        # With a key, what could not be queued is left to the key's retry, which carries on
        # this broadcast (recorded as failed, it would be skipped).
        done = await starting.accept(broadcast, list(accepted), refusals,
                                     mark_failed=claim is None)
    except (storage.StorageUnavailable, SettingsError) as error:
        return _unavailable(error)  # nothing was queued: trying again is safe
    body: dict[str, object] = {
        "id": done.broadcast.id,
        "accepted": done.queued,
        "refused": refusals,
        "status_url": routes.path("broadcasts").rstrip("/") + f"/{done.broadcast.id}",
    }
    if not done.missed and not done.unsure:
        return responses.json_body(body, 202)
    body["not_queued"] = done.missed
    body["perhaps_queued"] = done.unsure
    if claim is not None:
        # The key's retry carries on this broadcast: every recipient queued again, each sent
        # at most once by its own key, whatever became of this attempt's queue messages.
        claim.carry_on_later()
        wait = math.ceil(idempotency.IN_FLIGHT.total_seconds())
        body["error"] = (
            f"Storage failed or was too slow: {done.missed + done.unsure} of "
            f"{done.queued + done.missed + done.unsure} recipients are not known to be queued. "
            f"Send this request again with the same Idempotency-Key in {wait} s: it carries on "
            "this broadcast, and nobody is texted or called twice."
        )
        return responses.json_body(body, 503, headers={"Retry-After": str(wait)})
    if done.unsure:
        # Perhaps queued: perhaps sent. Not a 5xx, which a client would retry, sending them a
        # second time; the broadcast's page shows each as it is sent.
        body["error"] = (
            f"Storage did not say whether {done.unsure} of the recipients were queued: they may "
            f"be sent, and the broadcast's page shows each that is"
            + (f"; {done.missed} others were not queued and are recorded as failed"
               if done.missed else "")
            + ". Do not repeat this request: it would text or call the queued ones again "
            "(send an Idempotency-Key to make a retry safe)."
        )
        return responses.json_body(body, 202)
    recorded = "are recorded as failed" if done.marked else "could not be recorded either"
    if done.queued:
        # Accepted in part: the queued recipients will be sent. Not a 5xx, which a client would
        # retry, sending them all a second time.
        body["error"] = (
            f"Only {done.queued} of {done.queued + done.missed} recipients could be queued "
            f"(storage failed or was too slow); the other {done.missed} {recorded} and were "
            "not sent. Do not repeat this request: start a broadcast of those numbers alone."
        )
        return responses.json_body(body, 202)
    body["error"] = (
        f"Storage failed: none of the {done.missed} recipients could be queued, and nothing was "
        "sent; they " + recorded + " on this broadcast. Try again shortly."
    )
    return responses.json_body(body, 503, headers={"Retry-After": "5"})


async def _opted_out(sender: str | None, settings: Any) -> frozenset[str]:
    """Who opted out of texts from the broadcast's sender (one partition query): they are
    refused, never queued. Each is checked again when their turn comes (shared.broadcasts
    .sending), for an opt-out that arrives in between."""
    from_ = sender if sender is not None else sms.sender(None, settings)
    return await storage.within_deadline(
        optouts.opted_out_of(sms.opt_out_senders(from_, settings.messaging_service_sid)))


async def show(req: func.HttpRequest, broadcast_id: str) -> func.HttpResponse:
    if not model.ID.fullmatch(broadcast_id):
        return responses.json_error(
            400, f"'{broadcast_id[:40]}' is not a broadcast id, like the 'id' POST answered "
            "(BC followed by 30 digits and letters)."
        )
    query = queries.page_query(req, 100, 1000)
    if isinstance(query, func.HttpResponse):
        return query
    limit, token = query
    try:
        found = await storage.within_deadline(table.status(broadcast_id, limit, token))
    except storage.StorageRefused:
        return responses.json_error(400, "'continuation' is not a token this app gave out.")
    except (storage.StorageUnavailable, SettingsError) as error:
        return _unavailable(error, reading=True)
    if found is None:
        return responses.json_error(404, f"No broadcast {broadcast_id} is recorded.")
    path = f"{routes.path('broadcasts')}/{broadcast_id}"
    return responses.json_body({**found, "next_url": queries.next_url(path, limit, found["next"])},
                               200)


async def listing(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/broadcasts: the newest first, each with its counts, a page at a time."""
    query = queries.page_query(req, 10, 50)
    if isinstance(query, func.HttpResponse):
        return query
    limit, token = query
    try:
        items, next_token = await storage.within_deadline(table.recent(limit, token))
    except storage.StorageRefused:
        return responses.json_error(400, "'continuation' is not a token this app gave out.")
    except (storage.StorageUnavailable, SettingsError) as error:
        return _unavailable(error, reading=True)
    following = queries.next_url(routes.path("broadcasts"), limit, next_token)
    return responses.json_body({"broadcasts": items, "next": next_token,
                                "next_url": following}, 200)


def _unavailable(error: Exception, reading: bool = False) -> func.HttpResponse:
    """500 naming a bad setting, else 503: for a read, or for a broadcast of which nothing was
    queued (so trying again is safe)."""
    if isinstance(error, SettingsError):
        return answers.settings_error(FUNCTION, error)
    answers.logger.error("broadcasts outcome=unavailable reason=%s", error)
    done = "" if reading else ", so nothing was queued"
    return responses.json_error(
        503, f"Storage is unavailable{done}: try again shortly.", headers={"Retry-After": "5"},
    )
