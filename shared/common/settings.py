"""How every capability reads its settings: one reader, one loader, one error.

Each capability owns its settings (shared/<capability>/settings.py: the names it reads and a
loader that builds them) and reads them through `loader` here, which keeps the app's promises:
- settings are read when a request needs them, never at import, so a misconfigured app still
  loads and each request says what is wrong;
- a SettingsError names every missing or malformed setting at once, and never a value (some are
  secrets); an empty value counts as unset;
- a secret holding a Key Vault reference that App Service did not resolve is refused, never
  taken for the secret;
- a reader holds only the names its loader declared, so a setting read but not declared fails
  every request (and the tests) instead of being silently unset.
Each distinct set of raw values is validated once and the result reused (the environment does
not change under a running worker on Azure).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TypeVar
from urllib.parse import urlsplit

from shared.common import public_url

T = TypeVar("T")


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


class Reader:
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


def _public_base_url(reader: Reader) -> str | None:
    name = "PUBLIC_BASE_URL"
    value = reader.get(name)
    if value is None:
        return None
    value = value.rstrip("/")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        parts, port = None, None
    # Every URL the app hands Twilio starts with it: an empty "?" or "#" would turn the route
    # into a query or a fragment, and a host the Host header could not hold is no host at all.
    if (
        parts is None
        or parts.scheme not in ("https", "http")
        or not parts.hostname
        or not public_url.HOST.fullmatch(parts.netloc)
        or port == 0
        or parts.path
        or "?" in value
        or "#" in value
    ):
        reader.malformed(name, "a scheme and host only, like https://myapp.azurewebsites.net")
        return None
    if parts.scheme == "http" and not public_url.is_loopback(parts.netloc):
        # Twilio would fetch the calls' TwiML and post every callback in clear, where anyone on
        # the way can rewrite what a call does.
        reader.malformed(name, "https (http only for this machine, like http://localhost:7071)")
        return None
    return value


def public_origin(reader: Reader) -> str | None:
    public_base_url = _public_base_url(reader)
    hostname = reader.get("WEBSITE_HOSTNAME")
    if hostname is not None and not public_url.HOST.fullmatch(hostname):
        # A problem only where it would be the origin: PUBLIC_BASE_URL, when set, is.
        if public_base_url is None and not reader.problems_with("PUBLIC_BASE_URL"):
            reader.malformed("WEBSITE_HOSTNAME", "a host name, as App Service sets it")
        hostname = None
    return public_url.configured_origin(public_base_url, hostname)


def local_run(reader: Reader) -> bool:
    """`func start` sets WEBSITE_HOSTNAME to localhost:port: positive evidence of a local run."""
    hostname = reader.get("WEBSITE_HOSTNAME")
    return hostname is not None and public_url.is_loopback(hostname)


def optional_pattern(
    reader: Reader, name: str, pattern: str | re.Pattern[str], expected: str
) -> str | None:
    """The setting `name`, which must match `pattern` whole when set. A pattern given as its
    source is compiled when a value is first checked (`re` keeps it), not at import."""
    value = reader.get(name)
    if value is not None and not re.fullmatch(pattern, value):
        reader.malformed(name, expected)
        return None
    return value


def app_service_auth(reader: Reader) -> bool:
    """App Service authentication is on (WEBSITE_AUTH_ENABLED=True, set by the platform): only
    then do the X-MS-CLIENT-PRINCIPAL-* headers name a signed-in user, since the platform strips
    a client's own; without it they are whatever the caller wrote."""
    return (reader.get("WEBSITE_AUTH_ENABLED") or "").lower() == "true"


# Set by the platform, never by the user (so not in local.settings.json.example): App Service and
# Functions set WEBSITE_HOSTNAME to the app's default host name, `func start` to localhost:port;
# WEBSITE_AUTH_ENABLED when App Service authentication is on.
PLATFORM_SETTINGS = ("WEBSITE_HOSTNAME", "WEBSITE_AUTH_ENABLED")


def loader(
    names: tuple[str, ...], build: Callable[[Reader], T]
) -> Callable[[Mapping[str, str] | None], T]:
    """A load function for one set of settings: reads exactly `names` (and the platform's),
    validates each distinct set of raw values once, raises SettingsError naming every problem."""
    reads = names + PLATFORM_SETTINGS
    encoded = tuple(os.fsencode(name) for name in reads)

    @lru_cache(maxsize=8)
    def validated(raw: tuple[str, ...]) -> T:
        reader = Reader(dict(zip(reads, raw, strict=True)))
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
    """os.environ's own store on POSIX (the same values, as bytes: every change made through
    os.environ is seen), read without decoding each variable on every request; None where
    CPython keeps it otherwise (Windows), and os.environ is read instead."""
    data = getattr(os.environ, "_data", None)
    if os.name == "posix" and isinstance(data, dict):
        return data
    return None


# App Service authentication on or off (the platform's setting alone), read per request: whether
# an X-MS-CLIENT-PRINCIPAL-* header was set by the platform or written by the caller.
load_app_service_auth = loader((), app_service_auth)
