"""TwiML documents, built with the twilio library so every value is escaped for XML.

Each distinct document (they depend only on settings and make_call's message) is built once and
reused. Add a builder here for your own TwiML: a function that returns the document's XML.
"""

from __future__ import annotations

import re
from functools import lru_cache

# twilio.twiml's response modules are imported where a document is first built (docs/benchmark.md).

# The characters XML 1.0 allows (https://www.w3.org/TR/xml/#charsets). twilio.twiml writes with
# ElementTree, which escapes markup but passes every other character through: a control
# character in a text (a forwarded SMS can carry one) made a document Twilio cannot parse (its
# error 12100), and the whole answer was lost. Written here because neither library drops them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """`text` without the characters an XML document cannot hold."""
    return _NOT_XML.sub("", text)


@lru_cache(maxsize=256)
def say(text: str, voice: str | None = None, language: str | None = None,
        hang_up: bool = False) -> str:
    """<Response><Say>text</Say></Response>, with voice and language only when set; with
    `hang_up`, a <Hangup/> after it (an apology or a refusal that ends the call)."""
    from twilio.twiml.voice_response import VoiceResponse

    response = VoiceResponse()
    attributes = {}
    if voice:
        attributes["voice"] = voice
    if language:
        attributes["language"] = language
    response.say(xml_text(text), **attributes)
    if hang_up:
        response.hangup()
    return response.to_xml()


@lru_cache(maxsize=256)
def message(text: str) -> str:
    """<Response><Message>text</Message></Response>: the reply to an inbound SMS."""
    from twilio.twiml.messaging_response import MessagingResponse

    response = MessagingResponse()
    response.message(xml_text(text))
    return response.to_xml()


@lru_cache(maxsize=1)
def nothing() -> str:
    """<Response/>: an answer that says and sends nothing."""
    from twilio.twiml.messaging_response import MessagingResponse

    return MessagingResponse().to_xml()
