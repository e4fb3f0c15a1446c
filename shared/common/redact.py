"""Helpers that keep personal data and untrusted text out of log lines."""

from __future__ import annotations

import re

_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")  # every webhook logs its SID
# A phone number in E.164, raw or URL-encoded (an Azure Table entity's URL holds its keys, and
# an opt-out's row key is the person's number). The source only: `re` compiles it on first use,
# which a webhook that logs no sentence of numbers never makes (docs/benchmark.md).
_PHONE = r"(\+|%2[bB])(\d{7,15})"


def phone_number(number: str) -> str:
    """+14155550100 -> +1415*****00: enough to tell calls apart, not enough to dial."""
    if len(number) < 8:
        return "*" * len(number)
    return number[:5] + "*" * (len(number) - 7) + number[-2:]


def phone_numbers_in(text: str) -> str:
    """`text` with every phone number in it redacted as `phone_number` does: for sentences that
    quote numbers (a flow's problems, a policy's refusal, a library's error) on their way to a
    log line or a span."""
    if "+" not in text and "%2" not in text:
        return text
    return re.sub(_PHONE, lambda m: m.group(1) + phone_number("+" + m.group(2))[1:], text)


def sid(value: str | None) -> str:
    """A Twilio SID as logged; anything else (it comes from an unverified request) as '-'."""
    if value and _SID.fullmatch(value):
        return value
    return "-"
