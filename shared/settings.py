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

The webhooks' settings are here; those of the functions that call Twilio's REST API or keep
records are in shared.rest_settings, handed out from here on first use (see the end of this
module), so that a webhook's cold start does not compile or run them.

The settings are named tuples, immutable like the frozen dataclasses they were: a frozen dataclass
costs half a millisecond to define (its methods are generated and compiled at import), a named
tuple a fifth of that, and every webhook's cold start defines all five.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from shared import public_url

if TYPE_CHECKING:  # what __getattr__ (at the end) hands out, for type checkers
    from shared.rest_settings import (
        DEFAULT_HTTP_TIMEOUT,  # noqa: F401 - re-exported
        MAX_HTTP_TIMEOUT,  # noqa: F401 - re-exported
        CallSettings,  # noqa: F401 - re-exported
        RestSettings,  # noqa: F401 - re-exported
        SmsSettings,  # noqa: F401 - re-exported
        StorageSettings,  # noqa: F401 - re-exported
        load_call_settings,  # noqa: F401 - re-exported
        load_sms_settings,  # noqa: F401 - re-exported
        load_storage_settings,  # noqa: F401 - re-exported
    )

T = TypeVar("T")

DEFAULT_VOICE_GREETING = "Hello Monkey!"
DEFAULT_SMS_REPLY = "Hey, thanks for the ping! Twilio and Azure rock!"
# <Say voice="Polly.Joanna-Neural"> and language="en-US": Twilio's own value sets grow, so only
# the shape is checked here; Twilio reports an unknown voice in its debugger.
_VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}")


# Settings that hold a secret. On Azure they are Key Vault references; when App Service cannot
# resolve one it hands the app the reference text itself, which must never pass for the secret.
SECRET_SETTINGS = frozenset(
    {
        "TWILIO_AUTH_TOKEN",
        "TWILIO_AUTH_TOKEN_SECONDARY",
        "TWILIO_API_SECRET",
        "TWILIO_SHARED_KEY_SECRET",
        "TWILIO_SHARED_KEY_SECRET_SECONDARY",
    }
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
    # The secrets of the SharedKeys a Twilio Webhook Setting signs with (empty: none is set up);
    # a webhook carrying X-Twilio-Webhooks-Signature-Settings is checked against these instead.
    shared_key_secrets: tuple[str, ...]
    # PUBLIC_BASE_URL, else https://WEBSITE_HOSTNAME on Azure, else None.
    trusted_origin: str | None
    # WEBSITE_HOSTNAME is a loopback one, as `func start` sets it: a local run, where a request's
    # own host and forwarding headers may name the origin Twilio signed (shared.public_url).
    local_run: bool
    voice_greeting: str
    voice_name: str | None
    voice_language: str | None
    sms_reply: str


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


def _local_run(reader: _Reader) -> bool:
    """`func start` sets WEBSITE_HOSTNAME to localhost:port: positive evidence of a local run."""
    hostname = reader.get("WEBSITE_HOSTNAME")
    return hostname is not None and public_url.is_loopback(hostname)


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
    "TWILIO_SHARED_KEY_SECRET",
    "TWILIO_SHARED_KEY_SECRET_SECONDARY",
    "PUBLIC_BASE_URL",
    "VOICE_GREETING",
    "VOICE_NAME",
    "VOICE_LANGUAGE",
    "SMS_REPLY",
)


def _webhook_settings(reader: _Reader) -> WebhookSettings:
    token = reader.required("TWILIO_AUTH_TOKEN", ": webhook signatures cannot be checked")
    secondary = reader.get("TWILIO_AUTH_TOKEN_SECONDARY")
    shared_keys = (
        reader.get("TWILIO_SHARED_KEY_SECRET"),
        reader.get("TWILIO_SHARED_KEY_SECRET_SECONDARY"),
    )
    return WebhookSettings(
        auth_tokens=tuple(t for t in (token, secondary) if t),
        shared_key_secrets=tuple(k for k in shared_keys if k),
        trusted_origin=_public_origin(reader),
        local_run=_local_run(reader),
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


REST_SETTINGS = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
    "TWILIO_PHONE_NUMBER",
    "TWILIO_HTTP_TIMEOUT",
    "PUBLIC_BASE_URL",
)


CALL_SETTINGS = (*REST_SETTINGS, "CALLER_IDS", "CALL_ALLOWED_COUNTRIES")


SMS_SETTINGS = (
    *REST_SETTINGS,
    "TWILIO_MESSAGING_SERVICE_SID",
    "SMS_SENDERS",
    "SMS_ALLOWED_COUNTRIES",
)


BROADCAST_SETTINGS = ("BROADCAST_SENDS_PER_SECOND",)


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


# Every setting the app reads, for tools that must clear or list them (tests, benchmarks).
ALL_SETTINGS = tuple(
    dict.fromkeys(WEBHOOK_SETTINGS + CALL_SETTINGS + SMS_SETTINGS + BROADCAST_SETTINGS)
)


# The REST, call, SMS and storage settings are in shared.rest_settings, loaded on the first use of
# one of these names (`from shared.settings import load_call_settings` works as before): the
# webhooks' cold start neither compiles nor runs them (about 3 ms without cached bytecode).
_REST_NAMES = frozenset({
    "DEFAULT_HTTP_TIMEOUT", "MAX_HTTP_TIMEOUT", "RestSettings", "CallSettings", "SmsSettings",
    "StorageSettings", "load_call_settings", "load_sms_settings", "load_storage_settings",
    "BroadcastSettings", "load_broadcast_settings", "MAX_SENDS_PER_SECOND",
})


def __getattr__(name: str) -> Any:
    if name in _REST_NAMES:
        from shared import rest_settings

        return getattr(rest_settings, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
