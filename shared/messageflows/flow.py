"""A message flow (MESSAGE_FLOW): what sms_url answers a text, read and checked as a whole.

The format (docs/inbound-texts.md, flows/messages.schema.json):

- `keywords`: a reply per keyword, a keyword matching the whole text, in any case, with the
  spaces and punctuation around it ignored (as Twilio matches its own);
- `reply`: what any other text gets (optional: none, and the app says nothing);
- `forward_to`: numbers each text is forwarded to, with its sender and its media as links, in
  the TwiML answer itself (`<Message to=...>`: Twilio sends them, no REST call on the webhook's
  path); each passes send_sms's policy (SMS_ALLOWED_COUNTRIES, no premium or other costly
  numbers, none of the app's own), since the app pays for them.

A flow with any problem is refused whole (sms_url then answers an empty `<Response/>`): a
keyword that is one of the opt-out, opt-in or help keywords (those are the law's and Twilio's,
never a flow's), an empty or too long reply, a number the policy refuses, an unknown key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from shared.common.flowfile import FlowProblems
from shared.messageflows import keywords
from shared.webhooks.twiml import xml_text

MAX_TEXT = 1600  # Twilio's limit on a message body
MAX_KEYWORDS = 100
MAX_KEYWORD = 40
MAX_FORWARDS = 10
KEYS = frozenset({"keywords", "reply", "forward_to", "$schema", "description"})


class MessageFlow(NamedTuple):
    keywords: Mapping[str, str]  # normalised keyword -> its reply
    reply: str | None
    forward_to: tuple[str, ...]


class SmsPolicy(NamedTuple):
    """What the numbers a flow forwards to are checked against: send_sms's allowed countries,
    and the app's own numbers, which a forward would come back to."""

    allowed_countries: frozenset[str]
    own_numbers: frozenset[str] = frozenset()


def check(data: object, policy: SmsPolicy | None) -> MessageFlow:
    """The flow `data` describes; raises FlowProblems naming every problem. With no policy, its
    numbers are taken as written: only for a flow whose check stamp vouches for it."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise FlowProblems(["the flow: must be an object"])
    problems += [f"the flow: unknown key '{str(k)[:40]}'" for k in sorted(set(data) - KEYS)]
    replies = _keywords(data.get("keywords", {}), problems)
    reply = data.get("reply")
    if reply is not None and not _text_ok(reply):
        problems.append(f"reply: must be text of 1 to {MAX_TEXT:,} characters")
    forward_to = _numbers(data.get("forward_to", []), policy, problems)
    if problems:
        raise FlowProblems(problems)
    return MessageFlow(keywords=replies, reply=reply, forward_to=forward_to)


def _text_ok(value: object) -> bool:
    """Text of 1 to MAX_TEXT characters, once those XML cannot hold are dropped (the answer
    drops them: a reply of control characters alone would be an empty text)."""
    return isinstance(value, str) and bool(xml_text(value).strip()) and len(value) <= MAX_TEXT


def _keywords(raw: object, problems: list[str]) -> dict[str, str]:
    if not isinstance(raw, dict):
        problems.append("keywords: must be an object of keyword: reply")
        return {}
    if len(raw) > MAX_KEYWORDS:
        problems.append(f"keywords: at most {MAX_KEYWORDS}")
    found: dict[str, str] = {}
    for word, reply in raw.items():
        where = f"keywords '{str(word)[:40]}'"
        key = keywords.normalise(word) if isinstance(word, str) else ""
        if not key or len(key) > MAX_KEYWORD:
            problems.append(f"{where}: a keyword is 1 to {MAX_KEYWORD} characters")
        elif keywords.meaning(key) is not None:
            problems.append(f"{where}: is an opt-out, opt-in or help keyword, which Twilio and "
                            "the app answer (docs/inbound-texts.md)")
        elif key in found:
            problems.append(f"{where}: is the same keyword as another one")
        if not _text_ok(reply):
            problems.append(f"{where}: its reply must be text of 1 to {MAX_TEXT:,} characters")
        if key and isinstance(reply, str):
            found[key] = reply
    return found


def _numbers(raw: object, policy: SmsPolicy | None, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_FORWARDS:
        problems.append(f"forward_to: must list at most {MAX_FORWARDS} phone numbers")
        return ()
    found = []
    for i, value in enumerate(raw):
        number = _number(value, f"forward_to[{i}]", policy, problems)
        if number:
            found.append(number)
    return tuple(dict.fromkeys(found))


def _number(value: Any, where: str, policy: SmsPolicy | None, problems: list[str]) -> str | None:
    if not isinstance(value, str):
        problems.append(f"{where}: must be a phone number in E.164 format, like +14155550100")
        return None
    if policy is None:  # judged already: the flow's check stamp vouches for it
        return value
    from shared.outbound import numbers

    try:
        parsed = numbers.parse_e164(value, where)
        numbers.check_destination(parsed, policy.allowed_countries, "Messages",
                                  "SMS_ALLOWED_COUNTRIES")
        numbers.check_not_own(parsed, policy.own_numbers, "TWILIO_PHONE_NUMBER, SMS_SENDERS")
    except ValueError as error:  # InvalidNumber, ForbiddenDestination
        problems.append(f"{where}: " + str(error).replace(f"'{where}' ", ""))
        return None
    if parsed.e164 != value:  # so that a stamped flow, built without parsing, is the same
        problems.append(f"{where}: must be written as {parsed.e164}")
        return None
    return value
