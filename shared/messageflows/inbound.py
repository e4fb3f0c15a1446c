"""sms_url's answer to one inbound text: opt-out and help keywords first, then the reply.

An opt-out keyword marks the sender opted out of texts from the number (or Messaging Service)
it was sent to, and gets no reply from the app: Twilio's own confirmation is the reply, and a
second text would be refused anyway. An opt-in keyword clears that; HELP and INFO get
SMS_HELP_REPLY when it is set. Storage work is bounded (STORAGE_BUDGET): Twilio waits 15 s for
the answer, and a reply that waits on slow storage helps nobody. An opt-out that could not be
kept is logged at ERROR and is not lost: Twilio blocks the next text to that number with its
error 21610, which the app keeps then (shared.outbound.sms).
"""

from __future__ import annotations

import asyncio

from shared import webhooks
from shared.common import logs, redact
from shared.common.settings import SettingsError
from shared.messageflows import keywords
from shared.messageflows.settings import load_message_flow_settings

logger = logs.get_logger(__name__)

# Seconds the storage work of one inbound text may take before the answer goes out without it.
STORAGE_BUDGET = 3.0



async def answer(sms: webhooks.Webhook) -> str:
    """The TwiML answer to the text `sms` carries."""
    meaning = keywords.meaning(sms.param("Body"))
    if meaning in (keywords.OPTED_OUT, keywords.OPTED_IN):
        await _keep_word(sms, meaning == keywords.OPTED_OUT)
        return webhooks.twiml.nothing()
    if meaning == keywords.ASKED_FOR_HELP:
        help_reply = _help_reply()
        return webhooks.twiml.message(help_reply) if help_reply else webhooks.twiml.nothing()
    return webhooks.twiml.message(sms.settings.sms_reply)


def _help_reply() -> str | None:
    try:
        return load_message_flow_settings().help_reply
    except SettingsError as error:
        logger.error("sms_url outcome=no-help-reply reason=settings: %s", error.describe())
        return None


async def _keep_word(sms: webhooks.Webhook, opted_out: bool) -> None:
    from shared.records import optouts, storage

    sender = optouts.sender_of(sms.param("To"), sms.param("MessagingServiceSid"))
    person = sms.param("From")
    word = keywords.normalise(sms.param("Body") or "")
    message_sid = sms.param("MessageSid")
    try:
        await asyncio.wait_for(
            optouts.set_opted_out(sender, person, opted_out, f"keyword {word}", message_sid),
            STORAGE_BUDGET,
        )
    except (TimeoutError, storage.StorageUnavailable, SettingsError) as error:
        logger.error("sms_url MessageSid=%s from=%s outcome=%s-not-kept reason=%s",
                     redact.sid(message_sid), redact.phone_number(person),
                     "opt-out" if opted_out else "opt-in", error or "storage took too long")
