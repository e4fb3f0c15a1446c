"""sms_url's answer to one inbound text: opt-out and help keywords first, then the message flow
(MESSAGE_FLOW: its keywords, reply and forwarding), or SMS_REPLY without one.

An opt-out keyword marks the sender opted out of texts from the number (or Messaging Service)
it was sent to, and gets no reply from the app: Twilio's own confirmation is the reply, and a
second text would be refused anyway. An opt-in keyword clears that; HELP and INFO get
SMS_HELP_REPLY when it is set. A reply goes only to a sender send_sms may text (a phone number
in an allowed country: `_may_reply_to`), so a text from elsewhere cannot make the app text a
number that pays whoever holds it. Storage work is bounded (STORAGE_BUDGET): Twilio waits 15 s for
the answer, and a reply that waits on slow storage helps nobody. An opt-out that could not be
kept is logged at ERROR and is not lost: Twilio blocks the next text to that number with its
error 21610, which the app keeps then (shared.outbound.sms). A flow that was refused (logged
once, naming every problem) answers nothing at all, never a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from shared import telemetry, webhooks
from shared.common import logs, redact
from shared.common.e164 import E164
from shared.common.flowfile import FlowProblems
from shared.common.settings import SettingsError
from shared.common.text import small_count
from shared.messageflows import keywords
from shared.messageflows.flow import MAX_TEXT, MessageFlow
from shared.messageflows.settings import (
    MessageFlowSettings,
    load_message_flow_settings,
    load_own_senders,
    load_policy_inputs,
    load_sms_policy,
)
from shared.records import sids

logger = logs.get_logger(__name__)

# Seconds the storage work of one inbound text may take before the answer goes out without it.
STORAGE_BUDGET = 3.0

T = TypeVar("T")


async def answer(sms: webhooks.Webhook) -> str:
    """The TwiML answer to the text `sms` carries; the text is recorded on the way."""
    body = sms.param("Body")
    meaning = keywords.meaning(body)
    if meaning in (keywords.OPTED_OUT, keywords.OPTED_IN):
        # Before anything that could go wrong with a flow: the person's word is kept first.
        await _keep_word(sms, keywords.normalise(body or ""), meaning == keywords.OPTED_OUT)
        return webhooks.twiml.nothing()  # Twilio's own confirmation is the reply
    settings = _settings()
    if meaning == keywords.ASKED_FOR_HELP:
        help_reply = settings.help_reply if settings else None
        reply = help_reply and _may_reply_to(sms)
        # A person who opted out gets no help reply either (Twilio would refuse it: 21610).
        _, still = await asyncio.gather(
            _stored(sms, "text-not-kept", _record(sms, keywords.normalise(body or ""), 0)),
            _may_text(sms, sms.param("From") or "") if reply else _nothing())
        if reply and still:
            return webhooks.twiml.message(help_reply)
        return webhooks.twiml.nothing()
    flow = _flow(settings)
    if settings is None or (settings.message_flow and flow is None):
        await _stored(sms, "text-not-kept", _record(sms, None, 0))
        return webhooks.twiml.nothing()  # a refused flow (or its settings): logged, no reply
    if flow is None:
        # Your own reply to an ordinary text goes here, in place of SMS_REPLY (docs/extending.md):
        # what follows records the text and sends the reply only where the app may text.
        word, reply, forward_to = None, sms.settings.sms_reply, ()
    else:
        word = keywords.normalise(body or "")
        word = word if word in flow.keywords else None
        reply, forward_to = flow.keywords.get(word or "", flow.reply), flow.forward_to
        if _from_staff(sms, forward_to):
            reply, forward_to = None, ()
        forward_to = _forwarded_to(sms, forward_to)
    if reply and not _may_reply_to(sms):
        reply = None
    # Nobody who opted out of this number is texted: not the sender, not a forward_to number.
    # When that cannot be read in time nobody is (logged): the text itself is kept, by reconcile
    # if not now, and a reply or forward missed is better than a text after a STOP.
    people = [sms.param("From") or "", *forward_to]
    first, *still = await asyncio.gather(
        _stored(sms, "text-not-kept", _record(sms, word, len(forward_to))),
        *(_may_text(sms, person) for person in people))
    if not still[0]:
        reply = None
    kept = tuple(n for n, ok in zip(forward_to, still[1:], strict=True) if ok)
    if first and len(kept) != len(forward_to):  # recorded with the numbers before the reads
        from shared.records import store

        await _stored(sms, "text-not-kept", store.forwarded(str(sms.param("MessageSid")),
                                                            len(kept)))
    forward_to = kept
    if flow is None:
        return webhooks.twiml.message(reply) if reply else webhooks.twiml.nothing()
    return _flow_answer(sms, reply, forward_to)


def _from_staff(sms: webhooks.Webhook, forward_to: tuple[str, ...]) -> bool:
    """Whether the text came from one of the flow's forward_to numbers: the people who get the
    texts, not customers. Theirs gets no reply and goes to no one else, or one auto-responder
    ("I'm driving") answering the app's reply, or two answering each other's forwards, would go
    round for ever, every leg billed (an attack run's). Logged when it stops one."""
    sender = sms.param("From") or ""
    if sender not in forward_to:
        return False
    logger.warning("sms_url MessageSid=%s from=%s outcome=not-replied reason=the sender is one of "
                   "the flow's forward_to numbers: not replied to, not forwarded",
                   redact.sid(sms.param("MessageSid")), redact.phone_number(sender))
    return True


def _forwarded_to(sms: webhooks.Webhook, forward_to: tuple[str, ...]) -> tuple[str, ...]:
    """Who a text is forwarded to: nobody when it came from one of the app's own numbers (a
    forward, or a reply, coming back: the flow's check keeps them out of forward_to, but a text
    sent from one of them still arrives here), and never back to its own sender; either would
    go round for ever, every leg billed. Logged when it stops one."""
    if not forward_to:
        return forward_to
    sender = sms.param("From") or ""
    if sender == sms.param("To") or sender in _own_numbers():
        logger.warning("sms_url MessageSid=%s from=%s outcome=not-forwarded reason=the sender "
                       "is one of this app's own numbers", redact.sid(sms.param("MessageSid")),
                       redact.phone_number(sender))
        return ()
    return tuple(number for number in forward_to if number != sender)


def _may_reply_to(sms: webhooks.Webhook) -> bool:
    """Whether a reply may go to the sender: a phone number (not a short code, where a text can
    cost its sender, nor a name, nor one of the app's own numbers) in a country send_sms may
    text (SMS_ALLOWED_COUNTRIES; unset, the country of the app's number). A reply to whoever
    texts in would otherwise be a way to have the app text numbers that pay whoever holds them
    (SMS pumping). The text is kept all the same; the miss is logged. Forwarded texts go to
    the flow's own numbers, which its check judged.

    The countries are Twilio's own lookup of both numbers (FromCountry, ToCountry: signed with
    the rest), so the number library stays unloaded on this path (docs/benchmark.md); it is
    asked only when Twilio left one out. The number's type is not judged here: a premium-rate
    number does not send texts."""
    sender = sms.param("From") or ""
    if not E164.fullmatch(sender):
        reason = "the sender is not a phone number in E.164 (a short code or a name)"
    elif sender == sms.param("To") or sender in _own_numbers():
        reason = "the sender is one of this app's own numbers: replies would go back and forth"
    else:
        country = _country_param(sms, "FromCountry") or _country_of(sender)
        allowed = _reply_countries(sms)
        if country in allowed:
            return True
        reason = (f"the sender's country ({country or 'unknown'}) is not one SMS_ALLOWED_COUNTRIES "
                  f"allows ({', '.join(sorted(allowed)) or 'none'})")
    logger.warning("sms_url MessageSid=%s from=%s outcome=not-replied reason=%s",
                   redact.sid(sms.param("MessageSid")), redact.phone_number(sender), reason)
    return False


def _own_numbers() -> frozenset[str]:
    """TWILIO_PHONE_NUMBER and SMS_SENDERS as written."""
    return load_own_senders()[0]


def _own_senders() -> tuple[str, ...]:
    """Every sender send_sms may text from, as written: the app's own numbers and its Messaging
    Service (whose opt-outs send_sms honours, so the answers to a text honour them too)."""
    numbers, service = load_own_senders()
    return (*sorted(numbers), *((service,) if service else ()))


async def _nothing() -> bool:
    return False


def _reply_countries(sms: webhooks.Webhook) -> frozenset[str]:
    """SMS_ALLOWED_COUNTRIES as written (send_sms judges the setting and names a bad one; a code
    that is not one matches no country here); unset, send_sms's default, the country of
    TWILIO_PHONE_NUMBER: Twilio's ToCountry when that is the number texted (no number library
    on the usual path), else the library's reading of it. Not the country of whichever number
    was texted: another of the account's numbers abroad would reply where send_sms may not.
    With no TWILIO_PHONE_NUMBER either, the country of the number texted is all there is."""
    inputs = dict(load_policy_inputs())
    written = inputs.get("SMS_ALLOWED_COUNTRIES")
    if written and written.strip():
        return frozenset(code.strip().upper() for code in written.split(",") if code.strip())
    texted = _country_param(sms, "ToCountry")
    ours = inputs.get("TWILIO_PHONE_NUMBER")
    if texted and (not ours or sms.param("To") == ours.strip()):
        return frozenset({texted})
    try:
        return load_sms_policy().allowed_countries
    except SettingsError:
        return frozenset()


def _country_param(sms: webhooks.Webhook, name: str) -> str:
    """Twilio's FromCountry or ToCountry when it is a country code (ISO 3166 alpha-2), else "":
    anything else would be logged, and matched against the allowed countries, as it came."""
    code = (sms.param(name) or "").upper()
    return code if len(code) == 2 and code.isascii() and code.isalpha() else ""


def _country_of(number: str) -> str:
    from shared.outbound import numbers

    try:
        return numbers.parse_e164(number, "From").region
    except ValueError:  # InvalidNumber
        return ""


def _settings() -> MessageFlowSettings | None:
    try:
        return load_message_flow_settings()
    except SettingsError as error:
        logger.error("sms_url outcome=no-flow reason=settings: %s", error.describe())
        return None


def _flow(settings: MessageFlowSettings | None) -> MessageFlow | None:
    if settings is None or not settings.message_flow:
        return None
    from shared.messageflows import loading

    found = loading.flow(settings.message_flow)
    return None if isinstance(found, FlowProblems) else found


def _flow_answer(sms: webhooks.Webhook, reply: str | None, forward_to: tuple[str, ...]) -> str:
    """The reply to the sender, then the text forwarded to each of `forward_to`: built with
    the twilio library (every value escaped), per text."""
    from twilio.twiml.messaging_response import MessagingResponse

    response = MessagingResponse()
    if reply:
        response.message(webhooks.twiml.xml_text(reply))
    if forward_to:
        forwarded = [webhooks.twiml.xml_text(text) for text in forward_texts(
            sms.param("From") or "an unknown sender", sms.param("Body") or "", media_urls(sms))]
        for number in forward_to:
            for text in forwarded:
                response.message(text, to=number)
    return str(response.to_xml())


def forward_texts(sender: str, body: str, media: list[str]) -> list[str]:
    """What a forwarded text says: who sent it, what, and its media as links, in messages of
    1,600 characters: the first with the text (cut first, never the sender), and as many links
    as fit; the links that do not (ten of Twilio's take 1,630 characters) in the next, each
    with the sender again. A link longer than a message is left out."""
    head = f"From {sender}: "
    links = [url for url in media if len(url) + 1 <= MAX_TEXT - len(head)]
    tail = ""
    while links and len(head) + len(tail) + len(links[0]) + 1 <= MAX_TEXT:
        tail += f"\n{links.pop(0)}"
    room = MAX_TEXT - len(head) - len(tail)
    text = body if len(body) <= room else body[: max(room - 1, 0)] + "…"
    texts = [head + text + tail]
    more = f"From {sender}, more media:"
    while links:
        tail = ""
        while links and len(more) + len(tail) + len(links[0]) + 1 <= MAX_TEXT:
            tail += f"\n{links.pop(0)}"
        texts.append(more + tail)
    return texts


def media_urls(sms: webhooks.Webhook) -> list[str]:
    """The links to a text's media (MediaUrl0, MediaUrl1...: NumMedia of them, at most 10)."""
    wanted = min(small_count(sms.param("NumMedia"), 3) or 0, MAX_MEDIA)
    return [url for i in range(wanted) if (url := sms.param(f"MediaUrl{i}"))]


# Twilio's limit on the media of one message.
MAX_MEDIA = 10


async def _record(sms: webhooks.Webhook, keyword: str | None, forwarded_to: int) -> bool | None:
    """Record the text: True the first time, False for a delivery seen before, None when it has
    no MessageSid to key a record by."""
    from shared.records import store

    if not sids.MESSAGE.fullmatch(sms.param("MessageSid") or ""):
        return None
    return await store.inbound(str(sms.param("MessageSid")), sms.param("To"),
                               sms.param("From"), sms.param("Body"), media_urls(sms), keyword,
                               forwarded_to)


def _senders(sms: webhooks.Webhook) -> list[str]:
    """Whose opt-outs a text's keyword is about: the number it was sent to, and its Messaging
    Service when it belongs to one (the app may send from either). When neither is a sender the
    app texts from (a number pointed at sms_url but left out of SMS_SENDERS, a service it no
    longer uses), every one that is, too: the person said STOP to this app, and a row under a
    sender it never texts from would stop nothing."""
    texted = [key for key in (sms.param("To"), sms.param("MessagingServiceSid")) if key]
    own = _own_senders()
    if not set(texted) & set(own):
        texted.extend(own)
    return list(dict.fromkeys(texted))


async def _keep_word(sms: webhooks.Webhook, word: str, opted_out: bool) -> None:
    """Record the keyword's text, then keep the person's word under each of `_senders`. Only
    its first delivery changes anything (a retried START must not undo a later STOP); when the
    record cannot tell (storage down), an opt-out is kept all the same and an opt-in is not."""
    from shared.records import optouts

    outcome = "opt-out-not-kept" if opted_out else "opt-in-not-kept"
    first = await _stored(sms, "text-not-kept", _record(sms, word, 0), default=None)
    if first is False or (first is None and not opted_out):
        return
    person = sms.param("From")

    async def keep(sender: str) -> None:
        if not await optouts.set_opted_out(sender, person, opted_out, f"keyword {word}",
                                           sms.param("MessageSid")):
            raise Unkeyable("the sender or the number cannot key a row")
        telemetry.count_opt_out(opted_out, "sms_url")

    await asyncio.gather(*(_stored(sms, outcome, keep(sender)) for sender in _senders(sms)))


async def _may_text(sms: webhooks.Webhook, person: str) -> bool:
    """Whether `person` may be texted from the number the text came to: their latest word to
    it, its Messaging Service or any sender the app texts from (its numbers, its service) was
    not STOP. False when that cannot be read in time (logged), as send_sms refuses then: Twilio
    blocks only a STOP to the number a text goes from, not one to another of the app's. True
    when the app has no storage at all (AzureWebJobsStorage unset: no opt-out was ever kept
    here, and the record's own line names the setting)."""
    from shared.records import optouts

    async def check() -> bool:  # the latest word to the number, its service or the app's own
        senders = tuple(dict.fromkeys((*_senders(sms), *_own_senders())))
        try:
            return not await optouts.opted_out(senders, person)
        except SettingsError:
            return True

    return bool(await _stored(sms, "opt-outs-unread", check(), default=False, about=person))


class Unkeyable(ValueError):
    """A person's word that no row can hold (a sender or number with characters storage
    refuses in a key): logged as not kept."""


async def _stored(sms: webhooks.Webhook, outcome: str, work: Awaitable[T],
                  default: T | None = None, about: str | None = None) -> T | None:
    """`work` within STORAGE_BUDGET, or `default` when storage fails or is slow: logged at
    ERROR as `outcome` (with the MessageSid, to find the text at Twilio, and `about`, the
    number the work was about, else the sender), and the answer goes out all the same."""
    from shared.records import storage

    try:
        return await asyncio.wait_for(work, STORAGE_BUDGET)
    except (TimeoutError, storage.StorageUnavailable, SettingsError, Unkeyable) as error:
        reason: object = error or "storage took too long"
    except Exception as error:  # whatever it is, the answer still goes out (never a 500)
        reason = type(error).__name__
    logger.error("sms_url MessageSid=%s %s=%s outcome=%s reason=%s",
                 redact.sid(sms.param("MessageSid")), "about" if about else "from",
                 redact.phone_number(about or sms.param("From") or ""), outcome, reason)
    return default
