"""The console's settings: whether its functions also require a signed-in user
(CONSOLE_REQUIRE_SIGN_IN, with App Service Authentication on: docs/console-sign-in.md)."""

from __future__ import annotations

from typing import NamedTuple

from shared.common.settings import Reader, app_service_auth, loader

CONSOLE_SETTINGS = ("CONSOLE_REQUIRE_SIGN_IN",)


class SignInSettings(NamedTuple):
    required: bool  # CONSOLE_REQUIRE_SIGN_IN=true
    platform_auth: bool  # App Service Authentication is on (WEBSITE_AUTH_ENABLED)


def _sign_in_settings(reader: Reader) -> SignInSettings:
    raw = (reader.get("CONSOLE_REQUIRE_SIGN_IN") or "false").strip().lower()
    if raw not in ("true", "false"):
        reader.malformed("CONSOLE_REQUIRE_SIGN_IN", "true or false")
    return SignInSettings(required=raw == "true", platform_auth=app_service_auth(reader))


load_sign_in_settings = loader(CONSOLE_SETTINGS, _sign_in_settings)
