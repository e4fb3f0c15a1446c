"""The browser calls' settings: the API key a Voice access token is signed with, the TwiML App
the browser's calls go through, and the identity a local console's Device takes."""

from __future__ import annotations

import re
from typing import NamedTuple

from shared.common.client_names import is_identity
from shared.common.settings import Reader, loader

BROWSER_CALL_SETTINGS = ("TWILIO_ACCOUNT_SID", "TWILIO_API_KEY", "TWILIO_API_SECRET",
                         "TWILIO_TWIML_APP_SID", "CONSOLE_CLIENT_IDENTITY")
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
API_KEY = re.compile(r"SK[0-9a-fA-F]{32}")
TWIML_APP_SID = re.compile(r"AP[0-9a-fA-F]{32}")
DEFAULT_IDENTITY = "console"


class TokenSettings(NamedTuple):
    account_sid: str
    api_key: str
    api_secret: str
    twiml_app_sid: str
    identity: str  # the Device's identity when nobody is signed in (locally)


def _pattern(reader: Reader, name: str, pattern: re.Pattern[str], expected: str, why: str
             ) -> str:
    value = reader.required(name, why)
    if value is not None and not pattern.fullmatch(value):
        reader.malformed(name, expected)
    return value or ""


def _token_settings(reader: Reader) -> TokenSettings:
    identity = reader.get("CONSOLE_CLIENT_IDENTITY") or DEFAULT_IDENTITY
    if not is_identity(identity):
        reader.malformed("CONSOLE_CLIENT_IDENTITY",
                         "letters, digits and underscore, at most 121 characters")
    return TokenSettings(
        account_sid=_pattern(reader, "TWILIO_ACCOUNT_SID", ACCOUNT_SID, "AC + 32 hex digits",
                             ": the account the token is for"),
        api_key=_pattern(reader, "TWILIO_API_KEY", API_KEY, "SK + 32 hex digits",
                         ": a Voice access token is signed with an API key"),
        api_secret=reader.required("TWILIO_API_SECRET", ": the API key's secret signs the token")
        or "",
        twiml_app_sid=_pattern(reader, "TWILIO_TWIML_APP_SID", TWIML_APP_SID,
                               "AP + 32 hex digits", ": the TwiML App the browser's calls use"),
        identity=identity,
    )


load_token_settings = loader(BROWSER_CALL_SETTINGS, _token_settings)


def _twiml_app(reader: Reader) -> str:
    return _pattern(reader, "TWILIO_TWIML_APP_SID", TWIML_APP_SID, "AP + 32 hex digits",
                    ": only calls from this app's TwiML App are dialled")


load_twiml_app_sid = loader(("TWILIO_TWIML_APP_SID",), _twiml_app)
