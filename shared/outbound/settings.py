"""The settings of the functions that call Twilio's REST API (make_call, send_sms, and the
broadcasts' sends): credentials, numbers, where calls and texts may go."""

from __future__ import annotations

import re
from typing import NamedTuple

from shared.common.settings import Reader, loader, optional_pattern, public_origin
from shared.webhooks.settings import WEBHOOK_SETTINGS, webhook_settings

REST_SETTINGS = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
    "TWILIO_PHONE_NUMBER",
    "TWILIO_HTTP_TIMEOUT",
    "PUBLIC_BASE_URL",
)


# And the voice webhook's: every call the app places is answered by voice_url, so a setting that
# stops voice_url (a malformed VOICE_NAME, no TWILIO_AUTH_TOKEN) is named before a call is
# placed and billed, not in the webhook's log after it failed.
CALL_SETTINGS = tuple(dict.fromkeys(
    (*REST_SETTINGS, "CALLER_IDS", "CALL_ALLOWED_COUNTRIES", "SMS_SENDERS", *WEBHOOK_SETTINGS)))


SMS_SETTINGS = (
    *REST_SETTINGS,
    "TWILIO_MESSAGING_SERVICE_SID",
    "SMS_SENDERS",
    "SMS_ALLOWED_COUNTRIES",
)


DEFAULT_HTTP_TIMEOUT = 10.0
# host.json's functionTimeout is 12 s: a Twilio call must give up early enough for make_call to
# still answer 504 itself instead of being cut off by the host.
MAX_HTTP_TIMEOUT = 10.0

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_COUNTRY = re.compile(r"[A-Z]{2}")


class RestSettings(NamedTuple):
    """What every function that calls Twilio's REST API needs (make_call, send_sms, ...)."""

    account_sid: str
    rest_username: str
    rest_password: str
    # The account's number: the default caller ID and SMS sender ("" where not required).
    phone_number: str
    http_timeout: float
    # Where Twilio reaches this app (PUBLIC_BASE_URL, else https://WEBSITE_HOSTNAME); None when
    # neither is known. Never taken from a request.
    public_origin: str | None


class CallSettings(NamedTuple):
    """make_call: the REST settings, the caller IDs it may use and where it may call."""

    rest: RestSettings
    caller_ids: frozenset[str]
    allowed_countries: frozenset[str]
    # The app's own Twilio numbers (TWILIO_PHONE_NUMBER, SMS_SENDERS): never called.
    own_numbers: frozenset[str]
    # CALL_FLOW, whose by_number names more numbers that answer with the app's own flow.
    call_flow: str | None = None


class SmsSettings(NamedTuple):
    """send_sms: the REST settings, who may send, and where it may text."""

    rest: RestSettings
    # MG...: when set, every message goes through this Messaging Service, which picks the sender.
    messaging_service_sid: str | None
    senders: frozenset[str]
    allowed_countries: frozenset[str]


def _e164(reader: Reader, name: str, value: str) -> str | None:
    # numbers (and phonenumbers) is imported here, not at module level: the webhooks never
    # need it.
    from shared.outbound import numbers

    try:
        return numbers.parse_e164(value, name).e164
    except numbers.InvalidNumber:
        reader.malformed(name, "phone numbers in E.164 format, like +14155550100")
        return None


def allowed_countries(
    reader: Reader, name: str, phone_number: str | None, what: str
) -> frozenset[str]:
    """`name`'s country codes; unset, the country of TWILIO_PHONE_NUMBER."""
    import phonenumbers

    value = reader.get(name)
    if value is None:
        if phone_number:
            try:
                number = phonenumbers.parse(phone_number, None)
            except phonenumbers.NumberParseException:
                reader.malformed("TWILIO_PHONE_NUMBER", "an E.164 number, like +14155550100")
                return frozenset()
            return frozenset({phonenumbers.region_code_for_number(number)})
        if not reader.problems_with("TWILIO_PHONE_NUMBER"):
            reader.problems.append(
                (name, f"is not set, and there is no TWILIO_PHONE_NUMBER to take {what} from")
            )
        return frozenset()
    codes = {code.strip().upper() for code in value.split(",") if code.strip()}
    if not codes or any(
        not _COUNTRY.fullmatch(c) or c not in phonenumbers.SUPPORTED_REGIONS for c in codes
    ):
        reader.malformed(name, "ISO 3166 alpha-2 country codes separated by commas, like US,CA")
        return frozenset()
    return frozenset(codes)


def own_numbers(reader: Reader) -> frozenset[str]:
    """The app's own Twilio numbers (TWILIO_PHONE_NUMBER, SMS_SENDERS), which no flow may ring,
    text or forward to: the call or text would come back to the app's own webhooks. For the
    flows' checks: an entry of SMS_SENDERS that is not a number is left out, not a problem
    (send_sms names it; a typo in a texting setting must not refuse a phone line's flow)."""
    found = set(number_list(reader, "TWILIO_PHONE_NUMBER"))
    aside = Reader(reader.env)  # its problems are not the caller's
    for raw in (aside.get("SMS_SENDERS") or "").split(","):
        number = _e164(aside, "SMS_SENDERS", raw.strip()) if raw.strip() else None
        if number is not None:
            found.add(number)
    return frozenset(found)


def number_list(reader: Reader, name: str) -> frozenset[str]:
    """A comma-separated list of E.164 numbers (CALLER_IDS, SMS_SENDERS)."""
    found: set[str] = set()
    for raw in (reader.get(name) or "").split(","):
        if raw.strip():
            number = _e164(reader, name, raw.strip())
            if number is None:
                break
            found.add(number)
    return frozenset(found)


def _http_timeout(reader: Reader) -> float:
    name = "TWILIO_HTTP_TIMEOUT"
    value = reader.get(name)
    if value is None:
        return DEFAULT_HTTP_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_HTTP_TIMEOUT:
        reader.malformed(name, f"a number of seconds above 0 and at most {MAX_HTTP_TIMEOUT:g}")
        return DEFAULT_HTTP_TIMEOUT
    return seconds


def _rest_settings(reader: Reader, phone_number_why: str | None) -> RestSettings:
    """The REST settings; TWILIO_PHONE_NUMBER is required when `phone_number_why` says why."""
    account_sid = reader.required("TWILIO_ACCOUNT_SID")
    if account_sid is not None and not _ACCOUNT_SID.fullmatch(account_sid):
        reader.malformed("TWILIO_ACCOUNT_SID", "an account SID: AC followed by 32 hex digits")

    # An API key is Twilio's recommended REST credential; the auth token is the fallback.
    api_key, api_secret = reader.get("TWILIO_API_KEY"), reader.get("TWILIO_API_SECRET")
    username: str | None
    password: str | None
    if api_key or api_secret:
        username = reader.required("TWILIO_API_KEY", " (TWILIO_API_SECRET is set)")
        password = reader.required("TWILIO_API_SECRET", " (TWILIO_API_KEY is set)")
        if api_key is not None and not _API_KEY_SID.fullmatch(api_key):
            reader.malformed("TWILIO_API_KEY", "an API key SID: SK followed by 32 hex digits")
    else:
        username = account_sid
        password = reader.required(
            "TWILIO_AUTH_TOKEN", " (or set TWILIO_API_KEY and TWILIO_API_SECRET)"
        )

    if phone_number_why is None:
        phone_number = reader.get("TWILIO_PHONE_NUMBER")
    else:
        phone_number = reader.required("TWILIO_PHONE_NUMBER", f": {phone_number_why}")
    if phone_number is not None:
        phone_number = _e164(reader, "TWILIO_PHONE_NUMBER", phone_number)

    return RestSettings(
        account_sid=account_sid or "",
        rest_username=username or "",
        rest_password=password or "",
        phone_number=phone_number or "",
        http_timeout=_http_timeout(reader),
        public_origin=public_origin(reader),
    )


def _require_public_origin(reader: Reader, rest: RestSettings, why: str) -> None:
    if rest.public_origin is None and not reader.problems_with("PUBLIC_BASE_URL"):
        reader.problems.append(
            (
                "PUBLIC_BASE_URL",
                "is not set and there is no WEBSITE_HOSTNAME (Azure's own host name) to tell "
                f"Twilio where to {why}: set it to the https origin Twilio can reach (locally, "
                "your tunnel's https URL)",
            )
        )


def _call_settings(reader: Reader) -> CallSettings:
    rest = _rest_settings(reader, "it is the caller ID of every call")
    _require_public_origin(reader, rest, "fetch the call's TwiML")
    # What voice_url will need to answer the call: its problems, and the call flow.
    call_flow = webhook_settings(reader).call_flow
    return CallSettings(
        rest=rest,
        caller_ids=number_list(reader, "CALLER_IDS"),
        allowed_countries=allowed_countries(
            reader, "CALL_ALLOWED_COUNTRIES", rest.phone_number, "the calls' country"
        ),
        own_numbers=own_numbers(reader),
        call_flow=call_flow,
    )


load_call_settings = loader(CALL_SETTINGS, _call_settings)

# The REST client's settings alone, for what only reads from Twilio (the records' reconciliation).
load_rest_settings = loader(REST_SETTINGS, lambda reader: _rest_settings(reader, None))


def _sms_settings(reader: Reader) -> SmsSettings:
    service = optional_pattern(
        reader,
        "TWILIO_MESSAGING_SERVICE_SID",
        _MESSAGING_SERVICE_SID,
        "a Messaging Service SID: MG followed by 32 hex digits",
    )
    # With a Messaging Service, Twilio picks the sender: the account's number is then optional.
    rest = _rest_settings(
        reader,
        None
        if service or reader.get("TWILIO_MESSAGING_SERVICE_SID")
        else "it sends every message (or set TWILIO_MESSAGING_SERVICE_SID)",
    )
    _require_public_origin(reader, rest, "send the message's delivery reports")
    return SmsSettings(
        rest=rest,
        messaging_service_sid=service,
        senders=number_list(reader, "SMS_SENDERS"),
        allowed_countries=allowed_countries(
            reader, "SMS_ALLOWED_COUNTRIES", rest.phone_number, "the messages' country"
        ),
    )


load_sms_settings = loader(SMS_SETTINGS, _sms_settings)
