"""Text that ends up spoken on a call (make_call's `message`, read by voice_url): bounded, and
free of control characters. (An SMS body is cleaned by shared.outbound.sms: its line breaks are
kept.)
"""

from __future__ import annotations

import unicodedata

MAX_MESSAGE_LENGTH = 1000


def clean_text(text: str) -> str:
    """Drop control and format characters (they have no place in speech and can smuggle
    markup or terminal escapes into logs), turning line breaks and tabs into spaces."""
    kept = []
    for char in text:
        if char in "\t\r\n":
            kept.append(" ")
        elif unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            kept.append(char)
    return " ".join("".join(kept).split())
