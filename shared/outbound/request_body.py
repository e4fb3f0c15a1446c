"""The body of a request to a REST function (make_call, send_sms, broadcasts, clearing an
opt-out): JSON or form-encoded fields, from the caller's own code, never a page on another site.

Both encodings give the same thing: each named field once, as a string (or, for a field that
takes several values, a list of strings). Anything else is refused with a sentence saying what
to send instead, before any policy or Twilio sees the request.
"""

from __future__ import annotations

import json

import azure.functions as func

from shared.common.responses import Refusal
from shared.common.text import is_unicode
from shared.webhooks.signature import FORM_CONTENT_TYPE, parse_form

MAX_BODY_BYTES = 16 * 1024
# Sec-Fetch-Site values of a request a page on another website made the browser send. A form
# posts cross-site without asking the server first (its content types need no CORS preflight),
# so where the app runs without keys (the local host's default, `func start`) any page the
# developer opens could call and text through it. Every current browser sends the header; curl,
# scripts and servers send none, and the console, served by the app itself, is same-origin.
CROSS_SITE = frozenset({"cross-site", "same-site"})

Fields = dict[str, str | list[str]]


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


def read(
    req: func.HttpRequest,
    fields: tuple[str, ...],
    lists: frozenset[str] = frozenset(),
    max_bytes: int = MAX_BODY_BYTES,
) -> Fields:
    """The body's fields; raises Refusal (400, 413 or 415).

    `lists` names the fields that may hold several values: a JSON list of strings, or the field
    repeated in a form. Every other field is one string.
    """
    # The key in the x-functions-key header is the caller's own: no form can set a header, and a
    # cross-site fetch that sets one is sent only where the app's CORS settings let that site.
    site = (req.headers.get("sec-fetch-site") or "").strip().lower()
    if site in CROSS_SITE and not req.headers.get("x-functions-key"):
        raise Refusal(
            403,
            f"Refused: a page on another website sent this request through a browser "
            f"(Sec-Fetch-Site: {site}), without the function key in an x-functions-key header. "
            "Send it from your own code, or from the console at this app's own address.",
            "cross-site",
        )
    body = req.get_body() or b""
    if len(body) > max_bytes:
        raise Refusal(413, f"The request body is larger than {max_bytes // 1024} KB.")
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    data: dict[str, object]
    if content_type == "application/json":
        try:
            parsed = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            # RecursionError: "[" * 15000 nests deeper than the parser's stack; still bad JSON.
            raise Refusal(400, "The request body is not valid JSON.") from None
        if not isinstance(parsed, dict):
            raise Refusal(400, 'The JSON body must be an object, like {"to": "+14155550100"}.')
        data = parsed
    elif content_type == FORM_CONTENT_TYPE:
        try:
            form = parse_form(body)
        except ValueError:
            raise Refusal(400, "The request body is not valid UTF-8 form data.") from None
        repeated = sorted(n for n, values in form.items() if len(values) > 1 and n not in lists)
        if repeated:
            raise Refusal(400, f"The field '{repeated[0][:40]}' is given more than once.")
        data = {n: values if n in lists else values[0] for n, values in form.items()}
    else:
        raise Refusal(
            415, "Send the body as application/json or application/x-www-form-urlencoded."
        )

    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise Refusal(
            400, f"Unknown field '{unknown[0][:40]}': the fields are {_listed(fields)}."
        )
    for name, value in data.items():
        if name in lists and isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                raise Refusal(400, f"The field '{name}' must be a string or a list of strings.")
        elif not isinstance(value, str):
            kind = "a string or a list of strings" if name in lists else "a string"
            raise Refusal(400, f"The field '{name}' must be {kind}.")
        if not all(is_unicode(item) for item in (value if isinstance(value, list) else [value])):
            raise Refusal(
                400,
                f"The field '{name}' is not valid Unicode text: it holds an unpaired surrogate "
                "escape (like \\ud800) that no character is made of.",
            )
    return data  # type: ignore[return-value]


def text(fields: Fields, name: str) -> str | None:
    """A one-string field, None when absent or empty."""
    value = fields.get(name)
    return value if isinstance(value, str) and value else None
