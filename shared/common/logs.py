"""The app's loggers: every line they write has its control characters escaped.

Log lines carry text from requests (a Host header, a field name, Twilio's error message). Raw,
an escape sequence would repaint an operator's terminal and a line break would forge a second
log line; escaped (`\\x1b`, `\\n`), they are harmless and still readable.
"""

from __future__ import annotations

import logging
import unicodedata

# Control, format, line/paragraph separator, surrogate, private-use and unassigned characters.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def printable(text: str) -> str:
    """`text` with every unprintable character written as a Python escape; the rest as is."""
    if text.isprintable():
        return text
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in _UNPRINTABLE
        else char
        for char in text
    )


class _EscapingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = printable(message)
        if escaped is not message:
            record.msg, record.args = escaped, None
        return True


_FILTER = _EscapingFilter()


def get_logger(name: str) -> logging.Logger:
    """logging.getLogger(name), with the escaping filter attached once."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
