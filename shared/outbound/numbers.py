"""Which numbers the app may call or text: the toll-fraud policy, decided with phonenumbers.

Toll fraud (international revenue share fraud, traffic pumping, SMS pumping) works by getting an
app to call or text numbers that pay the fraudster. The defences here: strict E.164, only the
allowed countries, and never a number type that costs the sender extra.

The errors carry a sentence for the caller, not an HTTP status: the function decides that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

from shared.common.e164 import E164
from shared.outbound.number_errors import ForbiddenDestination, InvalidNumber

__all__ = ["E164", "ForbiddenDestination", "InvalidNumber", "Number", "check_destination",
           "check_not_own", "parse_e164"]

# What a form-encoded "+14155550100" becomes when the client did not encode the "+".
_PLUS_SENT_AS_SPACE = re.compile(r" [1-9][0-9]{1,14}")

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
    """A valid number written in E.164 (+ and up to 15 ASCII digits), else InvalidNumber."""
    message = f"'{field}' must be a valid phone number in E.164 format, like +14155550100."
    if _PLUS_SENT_AS_SPACE.fullmatch(raw):
        message += (
            " Its '+' arrived as a space: in form-encoded data, write the '+' as %2B"
            " (curl --data-urlencode 'to=+14155550100')."
        )
    if not E164.fullmatch(raw):
        raise InvalidNumber(message)
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise InvalidNumber(message) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidNumber(message)
    return Number(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=phonenumbers.region_code_for_number(number) or "",
        kind=phonenumbers.number_type(number),
    )


def own_number(raw: str | None, phone_number: str, others: frozenset[str], setting: str) -> str:
    """The number a call or text goes out from: TWILIO_PHONE_NUMBER, unless `raw` names another
    of the app's own (`others`, the numbers in `setting`); raises InvalidNumber, or Refusal
    403 for a number that is not the app's."""
    from shared.common.responses import Refusal

    if raw is None:
        return phone_number
    number = parse_e164(raw, "from").e164
    if number != phone_number and number not in others:
        raise Refusal(
            403, f"'from' must be TWILIO_PHONE_NUMBER or one of the numbers in {setting}.",
            reason="policy-from",
        )
    return number


def check_destination(
    number: Number,
    allowed_countries: frozenset[str],
    what: str = "Calls",
    setting: str = "CALL_ALLOWED_COUNTRIES",
) -> None:
    """ForbiddenDestination unless the number is in an allowed country and of an ordinary type.

    `what` ("Calls", "Messages") and `setting` word the sentence for the function asking.
    """
    if number.region not in allowed_countries:
        allowed = ", ".join(sorted(allowed_countries)) or "none"
        raise ForbiddenDestination(
            f"{what} to numbers in {number.region or 'that region'} are not allowed "
            f"({setting} allows: {allowed})."
        )
    costly = COSTLY_TYPES.get(number.kind)
    if costly:
        raise ForbiddenDestination(f"{what} to {costly} numbers are not allowed: they cost extra.")


def check_not_own(number: Number, own: frozenset[str], settings: str) -> None:
    """ForbiddenDestination for one of the app's own Twilio numbers (`settings` names where they
    are set): a call or text to it comes back to this app's own webhooks, whose answer may call
    or text again, and every leg is billed."""
    if number.e164 in own:
        raise ForbiddenDestination(
            f"{number.e164} is one of this app's own numbers ({settings}): a call or text to it "
            "would come back to this app."
        )
