"""The keywords of an inbound text that carriers and Twilio give a meaning to: opting out,
opting back in, asking for help.

Twilio's defaults (Advanced Opt-Out), matched like Twilio matches them: the whole message,
whatever its case, with the spaces and punctuation around it ignored ("Stop." is STOP, "stop
please" is not). OPTOUT and REVOKE are opt-out words too: carriers' and regulators' lists name
them, and treating them as opt-outs is the side to err on.
"""

from __future__ import annotations

import unicodedata

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                     "REVOKE"})
OPT_IN = frozenset({"START", "UNSTOP", "YES"})
HELP = frozenset({"HELP", "INFO"})

# What `meaning` answers.
OPTED_OUT = "opt-out"
OPTED_IN = "opt-in"
ASKED_FOR_HELP = "help"

# A text longer than this is not a keyword (the longest is 11 letters): no need to look further.
_LONGEST = 40


def _is_edge(char: str) -> bool:
    """A character ignored around a keyword: white space and punctuation of any script."""
    return char.isspace() or unicodedata.category(char).startswith("P")


def normalise(text: str) -> str:
    """The text as a keyword is compared: without the spaces and punctuation around it, in
    upper case (case-folded first: any case form of the letters counts, on the opt-out side)."""
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    return text[start:end].casefold().upper()


def meaning(body: str | None) -> str | None:
    """OPTED_OUT, OPTED_IN or ASKED_FOR_HELP for a text that is one of their keywords; None
    for any other text."""
    if not body or len(body) > _LONGEST:
        return None
    word = normalise(body)
    if word in OPT_OUT:
        return OPTED_OUT
    if word in OPT_IN:
        return OPTED_IN
    if word in HELP:
        return ASKED_FOR_HELP
    return None
