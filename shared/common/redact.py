"""Helpers that keep personal data and untrusted text out of log lines."""

from __future__ import annotations

import re

_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")


def phone_number(number: str) -> str:
    """+14155550100 -> +1415*****00: enough to tell calls apart, not enough to dial."""
    if len(number) < 8:
        return "*" * len(number)
    return number[:5] + "*" * (len(number) - 7) + number[-2:]


def sid(value: str | None) -> str:
    """A Twilio SID as logged; anything else (it comes from an unverified request) as '-'."""
    if value and _SID.fullmatch(value):
        return value
    return "-"
