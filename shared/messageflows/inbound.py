"""sms_url's answer to one inbound text: opt-out and help keywords first, then the message flow
(MESSAGE_FLOW: its keywords, reply and forwarding), or SMS_REPLY without one.

An opt-out keyword marks the sender opted out of texts from the number (or Messaging Service)
it was sent to, and gets no reply from the app: Twilio's own confirmation is the reply, and a
second text would be refused anyway. An opt-in keyword clears that; HELP and INFO get
SMS_HELP_REPLY when it is set. Storage work is bounded (STORAGE_BUDGET): Twilio waits 15 s for
the answer, and a reply that waits on slow storage helps nobody. An opt-out that could not be
kept is logged at ERROR and is not lost: Twilio blocks the next text to that number with its
error 21610, which the app keeps then (shared.outbound.sms). A flow that was refused (logged
once, naming every problem) answers nothing at all, never a 500.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable

from shared import webhooks
from shared.common import logs, redact
from shared.common.flowfile import FlowProblems
from shared.common.settings import SettingsError
from shared.messageflows import keywords
from shared.messageflows.flow import MAX_TEXT, MessageFlow
from shared.messageflows.settings import MessageFlowSettings, load_message_flow_settings

logger = logs.get_logger(__name__)

# Seconds the storage work of one inbound text may take before the answer goes out without it.
STORAGE_BUDGET = 3.0


async def answer(sms: webhooks.Webhook) -> str:
    """The TwiML answer to the text `sms` carries; the text is recorded on the way."""
    body = sms.param("Body")
    meaning = keywords.meaning(body)
    settings = _settings()
    flow = _flow(settings)
    word = keywords.normalise(body or "") if meaning or flow else None
    if meaning is None and flow is not None:
        word = word if word in flow.keywords else None
    forward_to = flow.forward_to if flow is not None and meaning is None else ()
    work = []
    if MESSAGE_SID.fullmatch(sms.param("MessageSid") or ""):  # else nothing to key a record by
        work.append(_stored(sms, "text", _record(sms, word, len(forward_to))))
    if meaning in (keywords.OPTED_OUT, keywords.OPTED_IN):
        opted_out = meaning == keywords.OPTED_OUT
        work.append(_stored(sms, "opt-out" if opted_out else "opt-in",
                            _keep_word(sms, opted_out, f"keyword {word}")))
    await asyncio.gather(*work)
    if meaning in (keywords.OPTED_OUT, keywords.OPTED_IN):
        return webhooks.twiml.nothing()  # Twilio's own confirmation is the reply
    if meaning == keywords.ASKED_FOR_HELP:
        help_reply = settings.help_reply if settings else None
        return webhooks.twiml.message(help_reply) if help_reply else webhooks.twiml.nothing()
    if settings is None or (settings.message_flow and flow is None):
        return webhooks.twiml.nothing()  # a refused flow (or its settings): logged, no reply
    if flow is None:
        return webhooks.twiml.message(sms.settings.sms_reply)
    reply = flow.keywords.get(word or "", flow.reply)
    return _flow_answer(sms, reply, forward_to)


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
        response.message(reply)
    if forward_to:
        forwarded = forward_text(sms.param("From") or "an unknown sender", sms.param("Body") or "",
                                 media_urls(sms))
        for number in forward_to:
            response.message(forwarded, to=number)
    return str(response.to_xml())


def forward_text(sender: str, body: str, media: list[str]) -> str:
    """What a forwarded text says: who sent it, what, and its media as links, within one
    message's 1,600 characters (the text is cut first, never the sender or the links)."""
    head = f"From {sender}: "
    tail = "".join(f"\n{url}" for url in media)
    room = MAX_TEXT - len(head) - len(tail)
    if room < 0:  # links longer than a message: as many as fit
        tail, room = "", MAX_TEXT - len(head)
    text = body if len(body) <= room else body[: max(room - 1, 0)] + "…"
    return head + text + tail


def media_urls(sms: webhooks.Webhook) -> list[str]:
    """The links to a text's media (MediaUrl0, MediaUrl1...: NumMedia of them, at most 10)."""
    count = sms.param("NumMedia") or "0"
    wanted = min(int(count), MAX_MEDIA) if count.isascii() and count.isdigit() else 0
    return [url for i in range(wanted) if (url := sms.param(f"MediaUrl{i}"))]


# Twilio's limit on the media of one message.
MAX_MEDIA = 10
# What Twilio names an inbound message: SM (SMS) or MM (MMS) and 32 hex digits.
MESSAGE_SID = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")


async def _record(sms: webhooks.Webhook, keyword: str | None, forwarded_to: int) -> None:
    from shared.records import store

    await store.inbound(str(sms.param("MessageSid")), sms.param("To"), sms.param("From"),
                        sms.param("Body"), media_urls(sms), keyword, forwarded_to)


async def _keep_word(sms: webhooks.Webhook, opted_out: bool, how: str) -> None:
    from shared.records import optouts

    sender = optouts.sender_of(sms.param("To"), sms.param("MessagingServiceSid"))
    await optouts.set_opted_out(sender, sms.param("From"), opted_out, how, sms.param("MessageSid"))


async def _stored(sms: webhooks.Webhook, what: str, work: Awaitable[None]) -> None:
    """`work` within STORAGE_BUDGET; storage failing or slow is logged at ERROR (with the
    MessageSid, to find the text at Twilio), and the answer goes out all the same."""
    from shared.records import storage

    try:
        await asyncio.wait_for(work, STORAGE_BUDGET)
    except (TimeoutError, storage.StorageUnavailable, SettingsError) as error:
        reason: object = error or "storage took too long"
    except Exception as error:  # whatever it is, the answer still goes out (never a 500)
        reason = type(error).__name__
    else:
        return
    logger.error("sms_url MessageSid=%s from=%s outcome=%s-not-kept reason=%s",
                 redact.sid(sms.param("MessageSid")), redact.phone_number(sms.param("From") or ""),
                 what, reason)
