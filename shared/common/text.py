"""Text the app takes from a caller and hands on (to Twilio, to Table Storage, to its logs)."""

from __future__ import annotations


def is_unicode(value: str) -> bool:
    """False for a string holding a lone surrogate, which JSON's \\uD800 escapes can make:
    Twilio, Table Storage and the logs cannot encode it (UTF-8 has no form for it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
