"""TwiML documents, built with the twilio library so every value is escaped for XML.

The documents depend only on settings and make_call's message, so each distinct one is built
once and reused: serialising with ElementTree on every request was a tenth of a webhook's cost.
"""

from __future__ import annotations

from functools import lru_cache

# twilio.twiml's two response modules are imported where each document is first built: the worker
# loads voice_url and sms_url together, and each one's cold start needs only its own (the voice
# verbs are a large module, 3 ms to import).


@lru_cache(maxsize=256)
def say(text: str, voice: str | None = None, language: str | None = None) -> str:
    """<Response><Say>text</Say></Response>, with voice and language only when set."""
    from twilio.twiml.voice_response import VoiceResponse

    response = VoiceResponse()
    attributes = {}
    if voice:
        attributes["voice"] = voice
    if language:
        attributes["language"] = language
    response.say(text, **attributes)
    return response.to_xml()


@lru_cache(maxsize=256)
def message(text: str) -> str:
    """<Response><Message>text</Message></Response>: the reply to an inbound SMS."""
    from twilio.twiml.messaging_response import MessagingResponse

    response = MessagingResponse()
    response.message(text)
    return response.to_xml()
