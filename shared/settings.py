"""App settings, read and validated in one place.

Settings are read when a request needs them, never at import time, so a function module loads
(and a cold start stays cheap) even when the app is misconfigured; the request then fails with a
message naming every missing or malformed setting. Values never appear in those messages: some
of them are secrets.

An empty value counts as unset, so `local.settings.json.example` can list every setting.

A process's environment does not change under it on Azure (new settings restart the worker), so
each distinct set of raw values is validated once and the result reused: the per-request cost
is reading the variables, not re-parsing phone numbers and URLs. Reading them each time still
lets tests (and `func start` reloads) change them.

The settings are named tuples, immutable like the frozen dataclasses they were: a frozen dataclass
costs half a millisecond to define (its methods are generated and compiled at import), a named
tuple a fifth of that, and every webhook's cold start defines all five.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit

from shared import public_url

T = TypeVar("T")

DEFAULT_VOICE_GREETING = "Hello Monkey!"
DEFAULT_SMS_REPLY = "Hey, thanks for the ping! Twilio and Azure rock!"
DEFAULT_HTTP_TIMEOUT = 10.0
# host.json's functionTimeout is 12 s: a Twilio call must give up early enough for make_call to
# still answer 504 itself instead of being cut off by the host.
MAX_HTTP_TIMEOUT = 10.0

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_COUNTRY = re.compile(r"[A-Z]{2}")
# <Say voice="Polly.Joanna-Neural"> and language="en-US": Twilio's own value sets grow, so only
# the shape is checked here; Twilio reports an unknown voice in its debugger.
_VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}")


# Settings that hold a secret. On Azure they are Key Vault references; when App Service cannot
# resolve one it hands the app the reference text itself, which must never pass for the secret.
SECRET_SETTINGS = frozenset(
    {"TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY", "TWILIO_API_SECRET"}
)
_KEY_VAULT_REFERENCE = "@microsoft.keyvault("
UNRESOLVED_KEY_VAULT_REFERENCE = (
    "is a Key Vault reference that App Service did not resolve (the app got the reference, not "
    "the secret): check that the app's managed identity has the Key Vault Secrets User role on "
    "the vault (a new role assignment can take minutes to apply), that the site's "
    "keyVaultReferenceIdentity names that identity, that the secret URI is right, and the "
    "setting's Key Vault reference status in the portal (Settings > Environment variables)"
)


class SettingsError(Exception):
    """Raised with every problem found, each naming its setting and never its value."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(self.describe())

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.problems]

    def describe(self) -> str:
        return "; ".join(f"{name} {reason}" for name, reason in self.problems)


class WebhookSettings(NamedTuple):
    """What the Twilio webhooks (voice_url, sms_url) need."""

    auth_tokens: tuple[str, ...]
    # PUBLIC_BASE_URL, else https://WEBSITE_HOSTNAME on Azure, else None (a local run).
    trusted_origin: str | None
    voice_greeting: str
    voice_name: str | None
    voice_language: str | None
    sms_reply: str


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


class SmsSettings(NamedTuple):
    """send_sms: the REST settings, who may send, and where it may text."""

    rest: RestSettings
    # MG...: when set, every message goes through this Messaging Service, which picks the sender.
    messaging_service_sid: str | None
    senders: frozenset[str]
    allowed_countries: frozenset[str]


class _Reader:
    """Collects problems while reading, so one error can name all of them at once.

    It holds only the names its loader declared: reading any other name raises KeyError, so a
    setting used in code but missing from the loader's tuple fails every request that reads it
    (and the tests) instead of being silently unset.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[tuple[str, str]] = []

    def get(self, name: str) -> str | None:
        value = self.env[name].strip()
        if name in SECRET_SETTINGS and value.lower().startswith(_KEY_VAULT_REFERENCE):
            self._problem(name, UNRESOLVED_KEY_VAULT_REFERENCE)
            return None
        return value or None

    def required(self, name: str, why: str = "") -> str | None:
        value = self.get(name)
        if value is None:
            self._problem(name, f"is not set{why}")
        return value

    def _problem(self, name: str, reason: str) -> None:
        if not self.problems_with(name):
            self.problems.append((name, reason))

    def problems_with(self, name: str) -> bool:
        return any(known == name for known, _ in self.problems)

    def malformed(self, name: str, expected: str) -> None:
        self._problem(name, f"is malformed: expected {expected}")

    def raise_if_any(self) -> None:
        if self.problems:
            raise SettingsError(self.problems)


def _public_base_url(reader: _Reader) -> str | None:
    name = "PUBLIC_BASE_URL"
    value = reader.get(name)
    if value is None:
        return None
    value = value.rstrip("/")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        reader.malformed(name, "a scheme and host only, like https://myapp.azurewebsites.net")
        return None
    return value


def _public_origin(reader: _Reader) -> str | None:
    public_base_url = _public_base_url(reader)
    hostname = reader.get("WEBSITE_HOSTNAME")
    if hostname is not None and not public_url.HOST.fullmatch(hostname):
        reader.malformed("WEBSITE_HOSTNAME", "a host name, as App Service sets it")
        hostname = None
    return public_url.configured_origin(public_base_url, hostname)


def _optional_pattern(
    reader: _Reader, name: str, pattern: re.Pattern[str], expected: str
) -> str | None:
    value = reader.get(name)
    if value is not None and not pattern.fullmatch(value):
        reader.malformed(name, expected)
        return None
    return value


# Set by the platform, never by the user (so not in local.settings.json.example): App Service and
# Functions set WEBSITE_HOSTNAME to the app's default host name; `func start` to localhost:port.
PLATFORM_SETTINGS = ("WEBSITE_HOSTNAME",)


def _loader(
    names: tuple[str, ...], build: Callable[[_Reader], T]
) -> Callable[[Mapping[str, str] | None], T]:
    """A load function for one set of settings: reads exactly `names` (and the platform's),
    validates each distinct set of raw values once, raises SettingsError naming every problem."""
    reads = names + PLATFORM_SETTINGS
    encoded = tuple(os.fsencode(name) for name in reads)

    @lru_cache(maxsize=8)
    def validated(raw: tuple[str, ...]) -> T:
        reader = _Reader(dict(zip(reads, raw, strict=True)))
        settings = build(reader)
        reader.raise_if_any()
        return settings

    @lru_cache(maxsize=8)
    def validated_bytes(raw: tuple[bytes, ...]) -> T:
        return validated(tuple(os.fsdecode(value) for value in raw))

    def load(env: Mapping[str, str] | None = None) -> T:
        if env is None:
            data = _environ_bytes()
            if data is not None:
                return validated_bytes(tuple([data.get(name, b"") for name in encoded]))
            env = os.environ
        return validated(tuple(env.get(name, "") for name in reads))

    return load


def _environ_bytes() -> Mapping[bytes, bytes] | None:
    """os.environ's own store on POSIX: the same values, as bytes, without os.environ's
    encode/decode per variable (a webhook reads 8 settings per request: 5 µs through os.environ,
    0.3 µs here, with every change made through os.environ seen at once, as before). None where
    CPython keeps it otherwise (Windows), and os.environ is read instead."""
    data = getattr(os.environ, "_data", None)
    if os.name == "posix" and isinstance(data, dict):
        return data
    return None


WEBHOOK_SETTINGS = (
    "TWILIO_AUTH_TOKEN",
    "TWILIO_AUTH_TOKEN_SECONDARY",
    "PUBLIC_BASE_URL",
    "VOICE_GREETING",
    "VOICE_NAME",
    "VOICE_LANGUAGE",
    "SMS_REPLY",
)


def _webhook_settings(reader: _Reader) -> WebhookSettings:
    token = reader.required("TWILIO_AUTH_TOKEN", ": webhook signatures cannot be checked")
    secondary = reader.get("TWILIO_AUTH_TOKEN_SECONDARY")
    return WebhookSettings(
        auth_tokens=tuple(t for t in (token, secondary) if t),
        trusted_origin=_public_origin(reader),
        voice_greeting=reader.get("VOICE_GREETING") or DEFAULT_VOICE_GREETING,
        voice_name=_optional_pattern(
            reader, "VOICE_NAME", _VOICE_NAME, "a Twilio voice name, like Polly.Joanna"
        ),
        voice_language=_optional_pattern(
            reader, "VOICE_LANGUAGE", _LANGUAGE, "a language tag, like en-US"
        ),
        sms_reply=reader.get("SMS_REPLY") or DEFAULT_SMS_REPLY,
    )


# Settings for voice_url and sms_url (and the status callbacks): only what checking a signature
# and answering with TwiML needs, so nothing about the REST API can break a webhook.
load_webhook_settings = _loader(WEBHOOK_SETTINGS, _webhook_settings)


def _e164(reader: _Reader, name: str, value: str) -> str | None:
    # numbers (and phonenumbers) is imported here, not at module level: the webhooks never
    # need it.
    from shared import numbers

    try:
        return numbers.parse_e164(value, name).e164
    except numbers.InvalidNumber:
        reader.malformed(name, "phone numbers in E.164 format, like +14155550100")
        return None


def _allowed_countries(
    reader: _Reader, name: str, phone_number: str | None, what: str
) -> frozenset[str]:
    """`name`'s country codes; unset, the country of TWILIO_PHONE_NUMBER."""
    import phonenumbers

    value = reader.get(name)
    if value is None:
        if phone_number:
            number = phonenumbers.parse(phone_number, None)
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


def _numbers(reader: _Reader, name: str) -> frozenset[str]:
    """A comma-separated list of E.164 numbers (CALLER_IDS, SMS_SENDERS)."""
    found: set[str] = set()
    for raw in (reader.get(name) or "").split(","):
        if raw.strip():
            number = _e164(reader, name, raw.strip())
            if number is None:
                break
            found.add(number)
    return frozenset(found)


def _http_timeout(reader: _Reader) -> float:
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


REST_SETTINGS = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
    "TWILIO_PHONE_NUMBER",
    "TWILIO_HTTP_TIMEOUT",
    "PUBLIC_BASE_URL",
)


def _rest_settings(reader: _Reader, phone_number_why: str | None) -> RestSettings:
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
        public_origin=_public_origin(reader),
    )


def _require_public_origin(reader: _Reader, rest: RestSettings, why: str) -> None:
    if rest.public_origin is None and not reader.problems_with("PUBLIC_BASE_URL"):
        reader.problems.append(
            (
                "PUBLIC_BASE_URL",
                "is not set and there is no WEBSITE_HOSTNAME (Azure's own host name) to tell "
                f"Twilio where to {why}: set it to the https origin Twilio can reach (locally, "
                "your tunnel's https URL)",
            )
        )


CALL_SETTINGS = (*REST_SETTINGS, "CALLER_IDS", "CALL_ALLOWED_COUNTRIES")


def _call_settings(reader: _Reader) -> CallSettings:
    rest = _rest_settings(reader, "it is the caller ID of every call")
    _require_public_origin(reader, rest, "fetch the call's TwiML")
    return CallSettings(
        rest=rest,
        caller_ids=_numbers(reader, "CALLER_IDS"),
        allowed_countries=_allowed_countries(
            reader, "CALL_ALLOWED_COUNTRIES", rest.phone_number, "the calls' country"
        ),
    )


load_call_settings = _loader(CALL_SETTINGS, _call_settings)


SMS_SETTINGS = (
    *REST_SETTINGS,
    "TWILIO_MESSAGING_SERVICE_SID",
    "SMS_SENDERS",
    "SMS_ALLOWED_COUNTRIES",
)


def _sms_settings(reader: _Reader) -> SmsSettings:
    service = _optional_pattern(
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
        senders=_numbers(reader, "SMS_SENDERS"),
        allowed_countries=_allowed_countries(
            reader, "SMS_ALLOWED_COUNTRIES", rest.phone_number, "the messages' country"
        ),
    )


load_sms_settings = _loader(SMS_SETTINGS, _sms_settings)


# The Functions host's own storage connection, which the app's records share: a connection
# string (locally UseDevelopmentStorage=true, for Azurite), or the identity-based settings the
# host documents for AzureWebJobsStorage (on Azure: account name, managedidentity, client ID).
STORAGE_SETTINGS = (
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
)
# Azurite's fixed, documented development account: the emulator accepts only this key, and it
# is no secret (Microsoft publishes it). UseDevelopmentStorage=true means exactly this account.
DEVELOPMENT_ACCOUNT = "devstoreaccount1"
DEVELOPMENT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={DEVELOPMENT_KEY};"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


class StorageSettings(NamedTuple):
    """Where the app's tables (and queues) live, and how it signs in."""

    connection_string: str | None  # a connection string, else the endpoints below
    table_endpoint: str | None
    queue_endpoint: str | None
    managed_identity_client_id: str | None  # with __credential=managedidentity


def _storage_settings(reader: _Reader) -> StorageSettings:
    value = reader.get("AzureWebJobsStorage")
    if value is not None:
        if value.replace(" ", "").lower() == "usedevelopmentstorage=true":
            value = DEVELOPMENT_STORAGE
        elif "=" not in value:
            reader.malformed("AzureWebJobsStorage", "a storage connection string")
        return StorageSettings(value, None, None, None)
    account = reader.get("AzureWebJobsStorage__accountName")
    tables = reader.get("AzureWebJobsStorage__tableServiceUri")
    queues = reader.get("AzureWebJobsStorage__queueServiceUri")
    if account is not None:
        if not re.fullmatch(r"[a-z0-9]{3,24}", account):
            reader.malformed("AzureWebJobsStorage__accountName", "a storage account name")
        tables = tables or f"https://{account}.table.core.windows.net"
        queues = queues or f"https://{account}.queue.core.windows.net"
    if tables is None:
        reader.problems.append(
            (
                "AzureWebJobsStorage",
                "is not set (nor AzureWebJobsStorage__accountName): the app keeps its records "
                "in Azure Storage; locally, set it to UseDevelopmentStorage=true (Azurite)",
            )
        )
    credential = (reader.get("AzureWebJobsStorage__credential") or "").lower()
    client_id = reader.get("AzureWebJobsStorage__clientId")
    return StorageSettings(
        connection_string=None,
        table_endpoint=tables,
        queue_endpoint=queues,
        managed_identity_client_id=(client_id or "") if credential == "managedidentity" else None,
    )


load_storage_settings = _loader(STORAGE_SETTINGS, _storage_settings)


# Every setting the app reads, for tools that must clear or list them (tests, benchmarks).
ALL_SETTINGS = tuple(dict.fromkeys(WEBHOOK_SETTINGS + CALL_SETTINGS + SMS_SETTINGS))
