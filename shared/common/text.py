"""Text the app takes from a caller or from Twilio and hands on (to Twilio, to Table Storage,
to its logs), or reads a number from."""

from __future__ import annotations


def is_unicode(value: str) -> bool:
    """False for a string holding a lone surrogate, which JSON's \\uD800 escapes can make:
    Twilio, Table Storage and the logs cannot encode it (UTF-8 has no form for it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def small_count(raw: object, digits: int) -> int | None:
    """A count written as text (a query's `limit`, Twilio's NumMedia, RecordingDuration,
    SequenceNumber, NumSegments): its value when it is at most `digits` ASCII digits, else None.
    `str.isdigit` alone lets through "²", which int() refuses, and int() refuses a string of
    more than 4,300 digits: either was an anonymous 500."""
    text = "" if raw is None else str(raw)
    if text.isascii() and text.isdigit() and len(text) <= digits:
        return int(text)
    return None
