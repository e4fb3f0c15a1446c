"""TwiML documents, built with the twilio library so every value is escaped for XML."""

from __future__ import annotations

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse


def say(text: str, voice: str | None = None, language: str | None = None) -> str:
    """<Response><Say>text</Say></Response>, with voice and language only when set."""
    response = VoiceResponse()
    attributes = {}
    if voice:
        attributes["voice"] = voice
    if language:
        attributes["language"] = language
    response.say(text, **attributes)
    return response.to_xml()


def message(text: str) -> str:
    """<Response><Message>text</Message></Response>: the reply to an inbound SMS."""
    response = MessagingResponse()
    response.message(text)
    return response.to_xml()
