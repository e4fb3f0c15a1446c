"""POST /api/make_call and POST /api/send_sms, behind their function folders.

Both do the same thing to a different resource: load the settings, read and check the body
against the toll-fraud policy, send one create request to Twilio, record what it created and
answer 201 with the SID. With an Idempotency-Key header, shared.records.idempotency makes sure one
key creates at most one call or message, and looks an unknown outcome up at Twilio instead of
sending again. What differs between a call and a message is an `Outbound`: its settings, its
parse and create steps (shared.outbound.calls, shared.outbound.sms), its record and its answer.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import azure.functions as func

from shared.common import responses
from shared.common.settings import SettingsError
from shared.console import signin
from shared.outbound import answers, calls, request_body, sms
from shared.outbound.settings import load_call_settings, load_sms_settings
from shared.records import idempotency, storage


class Outbound(NamedTuple):
    """What one REST function creates, and how: each step is calls' or sms'."""

    function: str
    subject: answers.Subject
    load_settings: Callable[[], Any]
    # The request body, read and checked: an object with `to` and `from_`; raises a refusal.
    parse: Callable[[func.HttpRequest, Any], Any]
    # What the parsed request must still pass, with storage (a text: the recipient's opt-out);
    # raises a refusal, or StorageUnavailable / SettingsError when it cannot be known.
    screen: Callable[[Any], Awaitable[None]]
    create: Callable[[Any, Any], Awaitable[Any]]
    # (created resource, parsed request, owner: the Idempotency-Key's or None) -> recorded?
    record: Callable[[Any, Any, str | None], Awaitable[bool]]
    # (settings, parsed request, sent at, owner) -> the resource that key created, or None.
    find: Callable[[Any, Any, datetime.datetime, str], Awaitable[Any]]
    answer: Callable[[Any, bool], dict[str, object]]


async def _nothing_to_screen(_: object) -> None:
    return None


CALL = Outbound(
    function="make_call",
    subject=calls.SUBJECT,
    load_settings=load_call_settings,
    parse=lambda req, settings: calls.parse(request_body.read(req, calls.FIELDS), settings),
    screen=_nothing_to_screen,  # an opt-out is about texts: calls are not affected
    create=calls.place,
    record=lambda created, call, owner: calls.record(created, call.message, owner),
    find=calls.find,
    answer=calls.answer,
)

MESSAGE = Outbound(
    function="send_sms",
    subject=sms.SUBJECT,
    load_settings=load_sms_settings,
    parse=lambda req, settings: sms.parse(request_body.read(req, sms.FIELDS, sms.LISTS), settings),
    screen=sms.screen,
    create=sms.send,
    record=sms.record,
    find=sms.find,
    answer=sms.answer,
)


async def handle(req: func.HttpRequest, outbound: Outbound) -> func.HttpResponse:
    """Create the call or message the request asks for, at most once per Idempotency-Key."""
    if refused := signin.refusal(req):
        return refused
    try:
        settings = outbound.load_settings()
    except SettingsError as error:
        return answers.settings_error(outbound.function, error)

    async def attempt(claim: idempotency.Claim | None) -> func.HttpResponse:
        return await create(req, outbound, settings, claim)

    async def lookup(
        to: str, from_: str | None, since: datetime.datetime, owner: str
    ) -> func.HttpResponse | None:
        # The retry's body is the first attempt's (the key's fingerprint says so); the to and
        # from are what was sent, as the key's row kept them.
        try:
            wanted = outbound.parse(req, settings)
        except answers.REFUSALS:
            return None  # refused now (the settings changed): the released key is refused too
        wanted = dataclasses.replace(wanted, to=to, from_=from_)
        found = await outbound.find(settings, wanted, since, owner)
        if found is None:
            return None
        return responses.json_body(outbound.answer(found, True), 201)

    return await idempotency.guarded(req, outbound.function, attempt, lookup)


async def create(
    req: func.HttpRequest, outbound: Outbound, settings: Any, claim: idempotency.Claim | None
) -> func.HttpResponse:
    """One create request to Twilio, once the body passed the policy (and the key, if any, is
    marked as sending, with the to and from a lookup would need)."""
    try:
        wanted = outbound.parse(req, settings)
        await outbound.screen(wanted)
    except answers.REFUSALS as refusal:
        return answers.refused(outbound.function, refusal)
    except SettingsError as error:  # the opt-outs' storage setting: named, not "unavailable"
        return answers.settings_error(outbound.function, error)
    except storage.StorageUnavailable as error:
        return answers.cannot_screen(outbound.function, error)

    if claim is not None and (refusal := await claim.sending(wanted.to, wanted.from_)):
        return refusal
    try:
        created = await outbound.create(wanted, settings)
    except Exception as error:  # every failure becomes a JSON answer
        return answers.twilio_failure(
            error, outbound.subject, wanted.to, settings.rest.http_timeout
        )
    recorded = await outbound.record(created, wanted, claim.owner if claim else None)
    return responses.json_body(outbound.answer(created, recorded), 201)
