"""HTTP responses with the content types and bodies Twilio and API callers expect."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.common.settings import SettingsError


class Refusal(Exception):
    """A request the app will not act on: the HTTP status and a sentence for the caller; and
    `reason`, the token the refusals metric counts it under (shared.telemetry.names), when the
    status alone does not say why (a 403: which policy; a 422: opted out)."""

    def __init__(self, status: int, error: str, reason: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.reason = reason


def twiml(document: str) -> func.HttpResponse:
    return func.HttpResponse(document, status_code=200, mimetype="text/xml", charset="utf-8")


def refused() -> func.HttpResponse:
    """403 with an empty body: a caller that failed the signature check learns nothing more."""
    return func.HttpResponse(b"", status_code=403)


def empty(status_code: int) -> func.HttpResponse:
    return func.HttpResponse(b"", status_code=status_code)


# Every JSON answer: it may hold phone numbers and texts (records, opt-outs, a call's answer), so
# no browser or proxy keeps a copy; and a browser never reads one as anything but JSON (an error
# quotes what the caller sent).
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_body(
    payload: dict[str, object], status_code: int, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return json_text(json.dumps(payload), status_code, headers)


def json_text(text: str, status_code: int, headers: dict[str, str] | None = None
              ) -> func.HttpResponse:
    """A JSON document already written (an idempotent request's answer, replayed)."""
    return func.HttpResponse(
        text,
        status_code=status_code,
        mimetype="application/json",
        charset="utf-8",
        headers={**JSON_HEADERS, **(headers or {})},
    )


def json_error(
    status_code: int, error: str, headers: dict[str, str] | None = None, **details: object
) -> func.HttpResponse:
    """{"error": "<a sentence a person understands>", ...details}."""
    return json_body({"error": error, **details}, status_code, headers)


def not_configured(error: SettingsError) -> func.HttpResponse:
    """500 naming every setting that is missing or malformed (never a value): the caller's
    request was fine, the app's configuration is not."""
    return json_error(500, f"The app is not configured: {error.describe()}.",
                      settings=error.names)
