"""The keywords of an inbound text that carriers and Twilio give a meaning to: opting out,
opting back in, asking for help.

Twilio's defaults (Advanced Opt-Out), matched like Twilio matches them, and then some on the
opt-out side: the whole message, whatever its case, with the spaces, punctuation and symbols
around it (an emoji with the marks a phone adds to it: "STOP ❤️" is STOP) and any invisible
characters ignored ("Stop." and "STOP\u200b" are STOP, "stop please" is not). OPTOUT and
REVOKE are opt-out words too: carriers' and regulators' lists name them (the FCC's, since 2025,
as "opt out": two words), and treating them as opt-outs is the side to err on. So on the
opt-out side only, spaces and punctuation inside the word count for nothing either ("Opt out",
"opt-out", "Stop all").
"""

from __future__ import annotations

import itertools
import unicodedata

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                     "REVOKE"})
OPT_IN = frozenset({"START", "UNSTOP", "YES"})
HELP = frozenset({"HELP", "INFO"})

# What `meaning` answers.
OPTED_OUT = "opt-out"
OPTED_IN = "opt-in"
ASKED_FOR_HELP = "help"

# A text longer than a message is not a keyword; nor is what is left longer than this (the
# longest keyword is 11 letters): no need to look further.
_LONGEST_TEXT = 1600
_LONGEST = 40


# Unicode's Default_Ignorable_Code_Point characters that are not format characters (Cf):
# variation selectors (U+FE0F after an emoji: "❤️" is U+2764 U+FE0F), the combining grapheme
# joiner, the Hangul fillers, Mongolian free variation selectors, Khmer inherent vowels, and the
# reserved ranges around them. Listed from DerivedCoreProperties.txt because unicodedata has no
# such property (and the `regex` package, which has, is not worth a dependency for one set).
_IGNORABLE_NOT_CF = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180D), (0x180F, 0x180F),
    (0x2065, 0x2065), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
)


def _is_invisible(char: str) -> bool:
    """Dropped before anything is compared: format characters (a zero-width space, a byte-order
    mark), the other default-ignorable characters (a variation selector, a Hangul filler) and
    control characters other than white space (a NUL a phone or gateway left in)."""
    category = unicodedata.category(char)
    if category == "Cf" or (category == "Cc" and not char.isspace()):
        return True
    point = ord(char)  # below the first range (every ASCII character): nothing to look up
    return point >= _IGNORABLE_NOT_CF[0][0] and any(
        low <= point <= high for low, high in _IGNORABLE_NOT_CF)


def _is_edge(char: str) -> bool:
    """A character ignored around a keyword: white space, punctuation and symbols of any script
    (`~stop~`, `+STOP`, `STOP!`), and the combining marks that sit on them (the keycap of
    "#️⃣")."""
    return char.isspace() or unicodedata.category(char)[0] in "PSM"


def normalise(text: str) -> str:
    """The text as a keyword is compared: compatibility forms folded (full-width letters are
    ASCII ones), invisible format characters dropped (a zero-width space, a byte-order mark), the
    spaces, punctuation and symbols around it stripped, in upper case (case-folded first: any
    case form of the letters counts, on the opt-out side)."""
    folded = unicodedata.normalize("NFKC", text)
    visible = "".join(c for c in folded if not _is_invisible(c))
    start, end = 0, len(visible)
    while start < end and _is_edge(visible[start]):
        start += 1
    while end > start and _is_edge(visible[end - 1]):
        end -= 1
    return visible[start:end].casefold().upper()


def _only_opt_out_words(word: str) -> bool:
    """A text of opt-out keywords only, said more than once (`STOP STOP`, `Stop. Stop.`,
    `stop end`): no one writes that but to opt out."""
    words = ["".join(run) for edge, run in itertools.groupby(word, _is_edge) if not edge]
    return len(words) > 1 and all(w in OPT_OUT for w in words)


def meaning(body: str | None) -> str | None:
    """OPTED_OUT, OPTED_IN or ASKED_FOR_HELP for a text that is one of their keywords; None
    for any other text."""
    if not body or len(body) > _LONGEST_TEXT:
        return None
    word = normalise(body)
    if len(word) > _LONGEST:
        return None
    if word in OPT_OUT or "".join(c for c in word if not _is_edge(c)) in OPT_OUT \
            or _only_opt_out_words(word):
        return OPTED_OUT
    if word in OPT_IN:
        return OPTED_IN
    if word in HELP:
        return ASKED_FOR_HELP
    return None
