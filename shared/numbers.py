"""Which numbers make_call may dial: the toll-fraud policy, decided with phonenumbers.

Toll fraud (international revenue share fraud, traffic pumping) works by getting an app to dial
numbers that pay the fraudster per minute. The defences here: strict E.164, only the countries
listed in CALL_ALLOWED_COUNTRIES, and never a number type that costs the caller extra.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

from shared.responses import Refusal

_E164 = re.compile(r"\+[1-9]\d{1,14}")

# Number types billed above a normal call, or routed to whoever holds them, by phonenumbers'
# classification: premium rate (09xx, 1-900), shared cost (084x), personal numbers (UK 070,
# US 500: forwarded anywhere at the caller's expense), universal access and pager numbers.
COSTLY_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
    PhoneNumberType.SHARED_COST: "shared-cost",
    PhoneNumberType.PERSONAL_NUMBER: "personal",
    PhoneNumberType.UAN: "universal access",
    PhoneNumberType.PAGER: "pager",
}


@dataclass(frozen=True)
class Number:
    e164: str
    region: str
    kind: int


def parse_e164(raw: str, field: str) -> Number:
    """A valid number written in E.164 (+ and up to 15 digits), else Refusal 400."""
    invalid = Refusal(
        400, f"'{field}' must be a valid phone number in E.164 format, like +14155550100."
    )
    if not _E164.fullmatch(raw):
        raise invalid
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise invalid from None
    if not phonenumbers.is_valid_number(number):
        raise invalid
    return Number(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=phonenumbers.region_code_for_number(number) or "",
        kind=phonenumbers.number_type(number),
    )


def check_destination(number: Number, allowed_countries: frozenset[str]) -> None:
    """Refusal 403 unless the number is in an allowed country and of an ordinary type."""
    if number.region not in allowed_countries:
        allowed = ", ".join(sorted(allowed_countries)) or "none"
        raise Refusal(
            403,
            f"Calls to numbers in {number.region or 'that region'} are not allowed "
            f"(CALL_ALLOWED_COUNTRIES allows: {allowed}).",
        )
    costly = COSTLY_TYPES.get(number.kind)
    if costly:
        raise Refusal(403, f"Calls to {costly} numbers are not allowed: they cost extra.")
