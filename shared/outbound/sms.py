"""send_sms's own parts: what a message request may hold, the SMS pumping policy applied to it,
and the Messages API request that sends it.

SMS pumping (artificially inflated traffic) works like toll fraud: someone gets the app to text
numbers whose carriers pay them per message. The same destination policy as calls applies, with
its own country list. A message creation is never retried: a second POST would text twice.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from shared import telemetry
from shared.common import logs, redact, routes
from shared.common.responses import Refusal
from shared.common.text import small_count
from shared.outbound import twilio_client
from shared.outbound.answers import Subject
from shared.outbound.request_body import Fields, text
from shared.outbound.settings import SmsSettings

if TYPE_CHECKING:
    from twilio.rest.api.v2010.account.message import MessageInstance

logger = logs.get_logger(__name__)

FIELDS = ("to", "body", "from", "media_url")
LISTS = frozenset({"media_url"})
MAX_BODY_LENGTH = 1600  # Twilio's limit on a message body
MAX_MEDIA = 10  # Twilio's limit on MediaUrl values of one message
# Where Twilio reports the message's delivery.
STATUS_CALLBACK_PATH = routes.path("message_status")

SUBJECT = Subject(
    function="send_sms",
    noun="message",
    create="send",
    created="sent",
    log="the Messaging logs",
    advice={
        21610: "The recipient has opted out of messages from this sender (they replied STOP): "
        "Twilio will not deliver to them until they reply START.",
        21408: "This account may not send messages to that region: enable it in the Twilio "
        "console's Messaging Geo Permissions, if you mean to.",
        21614: "'to' is not a mobile number: it cannot receive text messages.",
        21606: "The sender cannot send this message: it is not a message-capable Twilio number "
        "of this account for that destination.",
        21659: "The sender is not a Twilio number of this account: send from one of your Twilio "
        "numbers or through a Messaging Service.",
        21212: "The sender is not valid: use a Twilio number, short code or alphanumeric "
        "sender ID of this account.",
    },
)


@dataclass(frozen=True)
class SmsRequest:
    to: str
    from_: str | None  # None when a Messaging Service picks the sender
    messaging_service_sid: str | None
    body: str | None
    media_urls: tuple[str, ...]


def clean_body(raw: str) -> str:
    """The body without control characters other than the line break (a CR LF becomes LF).
    Format characters stay: emoji sequences are joined with them."""
    return "".join(char for char in raw if char == "\n" or not _is_control(char))


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def _media_urls(fields: Fields) -> tuple[str, ...]:
    value = fields.get("media_url")
    urls = [value] if isinstance(value, str) else list(value or [])
    if len(urls) > MAX_MEDIA:
        raise Refusal(
            400, f"'media_url' lists {len(urls)} URLs: a message takes at most {MAX_MEDIA}."
        )
    for url in urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme != "https"
            or not parts.hostname
            or len(url) > twilio_client.MAX_URL_LENGTH
            or not url.isprintable()
            or " " in url
        ):
            raise Refusal(
                400,
                "'media_url' must be https:// URLs Twilio can fetch, each at most "
                f"{twilio_client.MAX_URL_LENGTH:,} characters.",
            )
    return tuple(urls)


def sender(raw_from: str | None, settings: SmsSettings) -> str | None:
    """The number a message goes out from (None: the Messaging Service picks it); raises
    Refusal or InvalidNumber for a `from` the app may not send from."""
    from shared.outbound import numbers

    if settings.messaging_service_sid:
        if raw_from is not None:
            raise Refusal(
                403,
                "'from' cannot be chosen: messages go out through the Messaging Service in "
                "TWILIO_MESSAGING_SERVICE_SID, which picks the sender.",
                reason="policy-from",
            )
        return None
    return numbers.own_number(raw_from, settings.rest.phone_number, settings.senders,
                              "SMS_SENDERS")


def parse(fields: Fields, settings: SmsSettings) -> SmsRequest:
    """The message to send; raises Refusal or a numbers error (see rest_answers.REFUSALS)."""
    from shared.outbound import numbers

    raw_to = text(fields, "to")
    if raw_to is None:
        raise Refusal(400, "The field 'to' is required: the E.164 number to text.")
    to = numbers.parse_e164(raw_to, "to")
    numbers.check_destination(to, settings.allowed_countries, "Messages", "SMS_ALLOWED_COUNTRIES")
    numbers.check_not_own(to, settings.senders | {settings.rest.phone_number},
                          "TWILIO_PHONE_NUMBER, SMS_SENDERS")

    from_ = sender(text(fields, "from"), settings)
    media_urls = _media_urls(fields)
    raw_body = fields.get("body")
    body = clean_body(raw_body) if isinstance(raw_body, str) else None
    if not body and not media_urls:
        raise Refusal(400, "The field 'body' is required (1 to 1,600 characters), unless "
                           "'media_url' is given.")
    if body and len(body) > MAX_BODY_LENGTH:
        raise Refusal(400, f"'body' is longer than {MAX_BODY_LENGTH:,} characters.")
    return SmsRequest(
        to=to.e164,
        from_=from_,
        messaging_service_sid=settings.messaging_service_sid,
        body=body or None,
        media_urls=media_urls,
    )


def opt_out_senders(from_: str | None, messaging_service_sid: str | None) -> tuple[str, ...]:
    """Whose opt-outs decide a text: its sender (its Messaging Service, else its number) and
    every other number the app texts from (TWILIO_PHONE_NUMBER, SMS_SENDERS). Raises
    SettingsError."""
    from shared.outbound.settings import load_sms_settings
    from shared.records import optouts

    settings = load_sms_settings()
    return optouts.senders_for(from_, messaging_service_sid,
                               (settings.rest.phone_number, *sorted(settings.senders)))


async def screen(message: SmsRequest) -> None:
    """Refusal (422) when the recipient's latest word to any of the app's senders was STOP (a
    point read each: shared.records.optouts). Raises StorageUnavailable or SettingsError when
    that cannot be read: a text is never sent to someone who may have said STOP."""
    from shared.records import optouts

    if await optouts.opted_out(opt_out_senders(message.from_, message.messaging_service_sid),
                               message.to):
        logger.warning("send_sms to=%s outcome=refused reason=opted-out",
                       redact.phone_number(message.to))
        raise Refusal(422, optouts.refusal(message.to), reason="opted-out")


async def _learn_opt_out(message: SmsRequest, error: Exception) -> None:
    """Twilio refused the text with 21610: it knows the recipient opted out (a STOP the app did
    not see, or could not keep). Kept, so that the next text is refused before Twilio; a
    failure to keep it is logged, and the next 21610 keeps it then."""
    from shared.common.settings import SettingsError
    from shared.records import optouts, storage

    if getattr(error, "code", None) != optouts.TWILIO_OPTED_OUT:
        return
    try:
        await storage.within_deadline(optouts.keep_twilio_refusal(
            message.from_, message.messaging_service_sid, message.to))
    except (storage.StorageUnavailable, SettingsError) as failure:  # answered all the same
        logger.error("send_sms to=%s outcome=opt-out-not-kept reason=%s",
                     redact.phone_number(message.to), failure)


async def send(
    message: SmsRequest, settings: SmsSettings, callback_query: str = ""
) -> MessageInstance:
    """POST Messages.json once, within TWILIO_HTTP_TIMEOUT; raises whatever went wrong (a 21610
    refusal is kept as an opt-out first). `callback_query` (`?broadcast=…`) goes on the status
    callback's URL, which Twilio signs, and so does the running span's traceparent when
    telemetry is on."""
    client = twilio_client.get_client(settings.rest)
    options: dict[str, object] = {
        "to": message.to,
        "status_callback": (settings.rest.public_origin or "")
        + STATUS_CALLBACK_PATH
        + telemetry.callback_query(callback_query)  # the callback's span links to this one
        + routes.CALLBACK_RETRIES,
    }
    if message.messaging_service_sid:
        options["messaging_service_sid"] = message.messaging_service_sid
    else:
        options["from_"] = message.from_
    if message.body:
        options["body"] = message.body
    if message.media_urls:
        options["media_url"] = list(message.media_urls)
    try:
        created = await asyncio.wait_for(
            client.messages.create_async(**options),  # type: ignore[arg-type]
            timeout=settings.rest.http_timeout,
        )
    except Exception as error:
        await _learn_opt_out(message, error)
        raise
    logger.info(
        "send_sms to=%s outcome=created MessageSid=%s",
        redact.phone_number(message.to),
        redact.sid(created.sid),
    )
    return created


async def find(
    settings: SmsSettings, wanted: SmsRequest, since: datetime.datetime, owner: str
) -> MessageInstance | None:
    """The message an Idempotency-Key's create sent at `since` or later, if Twilio has it: how a
    key whose first attempt had an unknown outcome learns whether the message exists.

    Messages.json, filtered by to and from (or the Messaging Service), lists the candidates;
    only one with the same body and number of media can be this request's, and the earliest of
    those that no other request of ours owns is adopted for `owner` (shared.records.adopt).
    Left ambiguous (docs/security.md): two identical texts to one number within the window,
    one of them sent outside the app."""
    from shared.records import store

    client = twilio_client.get_client(settings.rest)
    listed = await asyncio.wait_for(twilio_client.listed_since(client.messages.page_async(
        to=wanted.to, from_=wanted.from_ or None, page_size=twilio_client.LOOKUP_PAGE_SIZE),
        since), timeout=settings.rest.http_timeout)
    for message in listed:
        if not _same_request(message, wanted, settings):
            continue
        fields = {"To": message.to, "From": message.from_, "CreatedStatus": message.status,
                  "Text": message.body}
        if message.sid and await store.adopt("message", message.sid, owner, fields,
                                             message.date_created):
            return message
    return None


def _same_request(listed: MessageInstance, wanted: SmsRequest, settings: SmsSettings) -> bool:
    """Could `listed` be what `wanted` created: the same sender, body and number of media."""
    if not wanted.from_ and listed.messaging_service_sid != settings.messaging_service_sid:
        return False  # sent through the Messaging Service: only its messages count
    media = str(listed.num_media or "0")
    return (listed.body or "") == (wanted.body or "") and media == str(len(wanted.media_urls))


async def record(
    created: MessageInstance, message: SmsRequest | None = None, owner: str | None = None,
    index_into: list[dict[str, object]] | None = None,
) -> bool:
    """Write the message's record (see shared.records.store), owned by the Idempotency-Key that sent
    it (`owner`, None without one); False when storage could not take it. `index_into`: the
    index row is left to the caller (store.write_index)."""
    from shared.records import store

    return await store.keep_created(
        "send_sms",
        "message",
        created.sid or "",
        created.to,
        created.from_,
        created.status,
        message.body if message else created.body,
        owner or store.NO_KEY,
        index_into,
    )


def answer(created: MessageInstance, recorded: bool) -> dict[str, object]:
    """The 201 body; null where Twilio gave no value."""
    return {
        "sid": created.sid,
        "status": created.status,
        "to": created.to,
        "from": created.from_,
        "messaging_service_sid": created.messaging_service_sid,
        "num_segments": small_count(created.num_segments, 4),
        "recorded": recorded,
    }
