"""The settings of what sms_url does with a text, beyond the webhook's own (SMS_REPLY).

SMS_HELP_REPLY: what HELP and INFO get back. Unset, the app says nothing to them: Twilio's own
help reply (Advanced Opt-Out) is the answer, or none.
"""

from __future__ import annotations

from typing import NamedTuple

from shared.common.settings import Reader, loader

# Twilio's limit on a message body.
MAX_REPLY = 1600

MESSAGE_FLOW_SETTINGS = ("SMS_HELP_REPLY",)


class MessageFlowSettings(NamedTuple):
    help_reply: str | None


def _message_flow_settings(reader: Reader) -> MessageFlowSettings:
    help_reply = reader.get("SMS_HELP_REPLY")
    if help_reply is not None and len(help_reply) > MAX_REPLY:
        reader.malformed("SMS_HELP_REPLY", f"a text of at most {MAX_REPLY:,} characters")
        help_reply = None
    return MessageFlowSettings(help_reply=help_reply)


load_message_flow_settings = loader(MESSAGE_FLOW_SETTINGS, _message_flow_settings)
