"""TwiML documents, built with the twilio library so every value is escaped for XML.

Each distinct document (they depend only on settings and make_call's message) is built once and
reused. Add a builder here for your own TwiML: a function that returns the document's XML.
"""

from __future__ import annotations

import re
from functools import lru_cache

# twilio.twiml's response modules are imported where a document is first built (docs/benchmark.md).

# The characters XML 1.0 forbids: C0 controls but tab, newline and carriage return; lone
# surrogates; U+FFFE and U+FFFF (https://www.w3.org/TR/xml/#charsets). twilio.twiml writes with
# ElementTree, which escapes markup but passes every other character through: a control
# character in a text (a forwarded SMS can carry one) made a document Twilio cannot parse (its
# error 12100), and the whole answer was lost. Written here because neither library drops them.
# Compiled on first use, not at import: every function folder imports this module, and even
# this small class takes about 1 ms to compile (the complement, the allowed ranges, took 9 ms of
# every cold start: BENCHMARKS.md).
# What a caller hears when the line cannot take the call: a flow that was refused, a setting that
# is malformed, a request that names no step of the flow.
APOLOGY = "Sorry, this line cannot take your call right now. Please try again later. Goodbye."

_NOT_XML = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"


def xml_text(text: str) -> str:
    """`text` without the characters an XML document cannot hold."""
    if text.isascii() and text.isprintable():  # most texts: nothing to drop, nothing to compile
        return text
    return re.sub(_NOT_XML, "", text)


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
