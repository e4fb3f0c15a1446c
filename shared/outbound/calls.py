"""make_call's own parts: what a call request may hold, the toll-fraud policy applied to it,
and the Calls API request that places it.

Everything that can be refused is refused before Twilio hears of it. A call creation is never
retried: if Twilio did not answer in time the call may still have been placed, and a second
POST would place a second one.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from shared import telemetry
from shared.common import logs, redact, routes
from shared.common.responses import Refusal
from shared.outbound import twilio_client
from shared.outbound.answers import Subject
from shared.outbound.request_body import Fields, text
from shared.outbound.settings import CallSettings
from shared.webhooks.speech import MAX_MESSAGE_LENGTH, clean_text

if TYPE_CHECKING:
    from twilio.rest.api.v2010.account.call import CallInstance

logger = logs.get_logger(__name__)

FIELDS = ("to", "from", "message")
SUBJECT = Subject(
    function="make_call", noun="call", create="place", created="placed", log="the call log"
)
# Where Twilio fetches the call's TwiML: host.json's routePrefix + voice_url's route.
VOICE_URL_PATH = routes.path("voice_url")
# Where Twilio reports the call's progress, and which steps it reports.
STATUS_CALLBACK_PATH = routes.path("call_status")
STATUS_CALLBACK_EVENTS = ["initiated", "ringing", "answered", "completed"]


@dataclass(frozen=True)
class CallRequest:
    to: str
    from_: str
    message: str | None
    url: str  # where Twilio fetches the call's TwiML


def voice_url(origin: str, message: str | None) -> str:
    url = origin + VOICE_URL_PATH
    return f"{url}?{urlencode({'message': message})}" if message else url


def caller_id(raw_from: str | None, settings: CallSettings) -> str:
    """The number a call comes from; raises Refusal or InvalidNumber for a `from` the app may
    not call from."""
    from shared.outbound import numbers

    return numbers.own_number(raw_from, settings.rest.phone_number, settings.caller_ids,
                              "CALLER_IDS")


def parse(fields: Fields, settings: CallSettings) -> CallRequest:
    """The call to place; raises Refusal or a numbers error (see rest_answers.REFUSALS)."""
    from shared.outbound import numbers  # phonenumbers: on first use (docs/benchmark.md)

    raw_to = text(fields, "to")
    if raw_to is None:
        raise Refusal(400, "The field 'to' is required: the E.164 number to call.")
    to = numbers.parse_e164(raw_to, "to")
    numbers.check_destination(to, settings.allowed_countries)
    numbers.check_not_own(to, settings.own_numbers, "TWILIO_PHONE_NUMBER, SMS_SENDERS")
    numbers.check_not_own(to, _answered_by_the_flow(settings), "CALL_FLOW's by_number")

    from_ = caller_id(text(fields, "from"), settings)
    if from_ == to.e164:
        raise numbers.ForbiddenDestination(
            f"{to.e164} is the number the call would come from (CALLER_IDS): a call to itself "
            "reaches nobody, and a number that points at this app would call it again."
        )

    message = text(fields, "message")
    if message is not None:
        if len(message) > MAX_MESSAGE_LENGTH:
            raise Refusal(400, f"'message' is longer than {MAX_MESSAGE_LENGTH} characters.")
        message = clean_text(message) or None
    # The settings check made sure the origin is known: it is never taken from the request.
    url = voice_url(settings.rest.public_origin or "", message)
    limit = twilio_client.MAX_URL_LENGTH
    if len(url) > limit:
        raise Refusal(
            400,
            f"'message' is too long to travel in the call's URL: Twilio takes URLs of at most "
            f"{limit:,} characters, and this one would be {len(url):,} once "
            "encoded (a character outside ASCII takes 6 to 12). Shorten the message.",
        )
    return CallRequest(to=to.e164, from_=from_, message=message, url=url)


def _answered_by_the_flow(settings: CallSettings) -> frozenset[str]:
    """The numbers the call flow's by_number answers: more of the app's own (a call to one would
    ring its flow, which dials again, every leg billed). None when the flow was refused: its
    numbers then answer with an apology alone."""
    if not settings.call_flow:
        return frozenset()
    from shared.callflows import loading
    from shared.callflows.flow import FlowProblems

    found = loading.flow(settings.call_flow)
    return frozenset() if isinstance(found, FlowProblems) else frozenset(found.by_number)


def status_callback_url(settings: CallSettings, callback_query: str = "") -> str:
    """call_status's URL for a call, with `callback_query` and, when telemetry is on, the
    running span's traceparent (the callbacks' spans link to it; Twilio signs the query)."""
    origin = settings.rest.public_origin or ""
    query = telemetry.callback_query(callback_query)
    return origin + STATUS_CALLBACK_PATH + query + routes.CALLBACK_RETRIES


async def place(
    call: CallRequest, settings: CallSettings, callback_query: str = ""
) -> CallInstance:
    """POST Calls.json once, within TWILIO_HTTP_TIMEOUT; raises whatever went wrong.
    `callback_query` (`?broadcast=…`) goes on the status callback's URL, which Twilio signs."""
    client = twilio_client.get_client(settings.rest)
    created = await asyncio.wait_for(
        client.calls.create_async(
            to=call.to,
            from_=call.from_,
            url=call.url,
            method="POST",
            status_callback=status_callback_url(settings, callback_query),
            status_callback_event=STATUS_CALLBACK_EVENTS,
            status_callback_method="POST",
        ),
        timeout=settings.rest.http_timeout,
    )
    logger.info(
        "make_call to=%s outcome=created CallSid=%s",
        redact.phone_number(call.to),
        redact.sid(created.sid),
    )
    return created


async def find(
    settings: CallSettings, wanted: CallRequest, since: datetime.datetime, owner: str
) -> CallInstance | None:
    """The call an Idempotency-Key's create placed at `since` or later, if Twilio has it: how a
    key whose first attempt had an unknown outcome learns whether the call exists.

    Calls.json, filtered by to and from, lists the candidates (the newest first); the earliest
    that no other request of ours owns is adopted for `owner` (shared.records.adopt), so a call
    another request placed to the same number is never taken for this one. A call's list entry
    holds nothing else that tells two calls apart (not its TwiML URL): two calls from one
    number to another within the window, one ours and one placed outside the app, cannot be
    told apart (docs/security.md)."""
    from shared.records import store

    client = twilio_client.get_client(settings.rest)
    listed = await asyncio.wait_for(twilio_client.listed_since(client.calls.page_async(
        to=wanted.to, from_=wanted.from_ or None, page_size=twilio_client.LOOKUP_PAGE_SIZE),
        since), timeout=settings.rest.http_timeout)
    for call in listed:
        fields = {"To": call.to, "From": call._from, "CreatedStatus": call.status,
                  "Text": wanted.message}
        if call.sid and await store.adopt("call", call.sid, owner, fields, call.date_created):
            return call
    return None


async def record(
    created: CallInstance, message: str | None = None, owner: str | None = None,
    index_into: list[dict[str, object]] | None = None,
) -> bool:
    """Write the call's record (see shared.records.store), owned by the Idempotency-Key that placed
    it (`owner`, None without one); False when storage could not take it. `index_into`: the
    index row is left to the caller (store.write_index)."""
    from shared.records import store

    return await store.keep_created(
        "make_call", "call", created.sid or "", created.to, created._from, created.status,
        message, owner or store.NO_KEY, index_into,
    )


def answer(created: CallInstance, recorded: bool) -> dict[str, object]:
    """The 201 body. twilio-python names the call's "from" field `_from` (a Python keyword)."""
    return {
        "sid": created.sid,
        "status": created.status,
        "to": created.to,
        "from": created._from,
        "recorded": recorded,
    }
