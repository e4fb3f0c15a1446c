"""The settings of what sms_url does with a text, beyond the webhook's own (SMS_REPLY).

- SMS_HELP_REPLY: what HELP and INFO get back. Unset, the app says nothing to them: Twilio's own
  help reply (Advanced Opt-Out) is the answer, or none.
- MESSAGE_FLOW: the message-flow file (keywords, a reply, forwarding), relative to the app root.
- The policy the numbers a flow forwards to pass: send_sms's (SMS_ALLOWED_COUNTRIES, default
  the country of TWILIO_PHONE_NUMBER; none of the app's own numbers, TWILIO_PHONE_NUMBER and
  SMS_SENDERS), judged with the number library on first use; the check stamp compares their raw
  values only, without it (shared.common.stamp).
- The senders send_sms texts from (TWILIO_PHONE_NUMBER, SMS_SENDERS and its Messaging Service,
  TWILIO_MESSAGING_SERVICE_SID), as written: whose opt-outs the answers to a text honour.
"""

from __future__ import annotations

from typing import NamedTuple

from shared.common.settings import Reader, loader
from shared.messageflows.flow import MAX_TEXT, SmsPolicy

MESSAGE_FLOW_SETTINGS = ("SMS_HELP_REPLY", "MESSAGE_FLOW")
POLICY_SETTINGS = ("TWILIO_PHONE_NUMBER", "SMS_ALLOWED_COUNTRIES", "SMS_SENDERS")


class MessageFlowSettings(NamedTuple):
    help_reply: str | None
    message_flow: str | None


def _message_flow_settings(reader: Reader) -> MessageFlowSettings:
    help_reply = reader.get("SMS_HELP_REPLY")
    if help_reply is not None and len(help_reply) > MAX_TEXT:
        reader.malformed("SMS_HELP_REPLY", f"a text of at most {MAX_TEXT:,} characters")
        help_reply = None
    return MessageFlowSettings(help_reply=help_reply, message_flow=reader.get("MESSAGE_FLOW"))


load_message_flow_settings = loader(MESSAGE_FLOW_SETTINGS, _message_flow_settings)


def _sms_policy(reader: Reader) -> SmsPolicy:
    from shared.outbound.settings import allowed_countries, own_numbers

    return SmsPolicy(allowed_countries(reader, "SMS_ALLOWED_COUNTRIES",
                                       reader.get("TWILIO_PHONE_NUMBER"), "the messages' country"),
                     own_numbers=own_numbers(reader))


load_sms_policy = loader(POLICY_SETTINGS, _sms_policy)

# Every sender send_sms may text from, as written (send_sms judges them and names a bad one; one
# written otherwise than E.164 matches no sender here): (the numbers, the Messaging Service).
OWN_SENDER_SETTINGS = ("TWILIO_PHONE_NUMBER", "SMS_SENDERS", "TWILIO_MESSAGING_SERVICE_SID")


def _own_senders(reader: Reader) -> tuple[frozenset[str], str | None]:
    written = ",".join(reader.get(name) or "" for name in ("TWILIO_PHONE_NUMBER", "SMS_SENDERS"))
    numbers = frozenset(n.strip() for n in written.split(",") if n.strip())
    return numbers, reader.get("TWILIO_MESSAGING_SERVICE_SID")


load_own_senders = loader(OWN_SENDER_SETTINGS, _own_senders)

# The policy settings as they are, not yet judged: what a flow's check stamp is compared with.
PolicyInputs = tuple[tuple[str, str | None], ...]
load_policy_inputs = loader(POLICY_SETTINGS,
                            lambda reader: tuple((n, reader.get(n)) for n in POLICY_SETTINGS))
