"""Is this webhook request really from Twilio? The X-Twilio-Signature check.

The HMAC and body hash are the twilio library's (`RequestValidator.compute_signature`,
`compute_hash`, and its `add_port`/`remove_port`). What is ours is finding the URL Twilio signed
(see `public_url`), reading the parameters exactly as Twilio sent them, and trying each auth
token in turn, so a token can be rotated without refusing a single genuine request.

`RequestValidator.validate` is not called: it signs every port and query variant of a URL at
once. Here the candidate URLs are tried one at a time, the likeliest first (the URL as received,
at the trusted origin), with the same checks.

A Twilio Webhook Rule may sign with a SharedKey instead of the auth token; the request then says
so in X-Twilio-Webhooks-Signature-Settings (see `_signing`), and the same check runs with that
key's secret and the algorithm named there (twilio's `get_signature_algorithm`).
"""

from __future__ import annotations

import hmac
import operator
from collections.abc import Iterator
from functools import lru_cache
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus, urlencode, urlparse

import azure.functions as func
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    add_port,
    get_signature_algorithm,
    remove_port,
)

from shared.common import public_url

# A base64 HMAC-SHA1 is 28 characters (SHA-256: 44). Anything much longer is not a signature,
# and is refused before any work is spent on it.
MAX_SIGNATURE_LENGTH = 64
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# twilio's SIGNATURE_SETTINGS_HEADER is present when a Twilio Webhook Rule matched the URL: the
# request is then signed with that Setting's SharedKey and algorithm
# (`key=webhooks_sharedkey_…,algorithm=HMAC_SHA256`), not with the auth token. The algorithms
# twilio's compute_signature knows (it raises ValueError on others), checked before any work:
SUPPORTED_ALGORITHMS = frozenset({HMAC_SHA1, HMAC_SHA256})
_ORIGIN_HINT = (
    "; if Twilio calls this app at another origin (custom domain, proxy, tunnel), "
    "PUBLIC_BASE_URL must be that origin"
)


class FormParams(dict[str, list[str]]):
    """Form fields with every value of a repeated key (the lists `_Validator` hands twilio's
    compute_signature).

    `one_value_each` is True only on a form `parse_form` found no repeated field in (every
    webhook Twilio sends); `verify` signs that form straight after parsing it, before any other
    code holds it, and a form built any other way takes twilio's own loop."""

    one_value_each = False

    def first(self, key: str) -> str | None:
        values = self.get(key)
        return values[0] if values else None


def parse_form(data: bytes | str) -> FormParams:
    """Raises ValueError on a body that is not valid UTF-8 form data.

    Same result as `urllib.parse.parse_qsl(text, keep_blank_values=True, errors="strict")`
    (a property test holds it to that), but only the pieces that are escaped go through
    `unquote_plus`: a Twilio voice webhook has some 25 fields, mostly plain, and unquoting every
    one was a third of a webhook's time. The escaped pieces are mostly the same from request to
    request (the app's own number, the caller's, a city: `To=%2B14155550100`,
    `FromCity=SAN+FRANCISCO`), so short ones are unescaped once and remembered.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    pairs = [
        piece.partition("=") if "%" not in piece and "+" not in piece
        else _unescape_short_pair(piece) if len(piece) <= _SHORT_PIECE
        else _unescape_pair(piece)
        for piece in text.split("&")
        if piece
    ]
    # Twilio repeats no field in a webhook: one comprehension builds the usual body, and a
    # repeated field (kept, every value in order) takes the loop.
    params = FormParams({name: [value] for name, _, value in pairs})
    params.one_value_each = len(params) == len(pairs)
    if not params.one_value_each:
        params = FormParams()
        for name, _, value in pairs:
            params.setdefault(name, []).append(value)
    return params


# Escaped pieces at most this long are remembered: phone numbers, cities, short words. Longer
# ones (an SMS body) vary too much to be worth keeping.
_SHORT_PIECE = 80


def _unescape_pair(piece: str) -> tuple[str, str, str]:
    name, separator, value = piece.partition("=")
    return _unescape(name), separator, _unescape(value)


@lru_cache(maxsize=1024)
def _unescape_short_pair(piece: str) -> tuple[str, str, str]:
    """_unescape_pair, remembered (a bounded cache of short strings: some 200 KB at most). An
    invalid piece raises every time: lru_cache keeps no exception."""
    return _unescape_pair(piece)


def _unescape(text: str) -> str:
    if "%" in text or "+" in text:
        return unquote_plus(text, errors="strict")
    return text


class Verdict:
    """The outcome of the check; `reason` is safe to log (no token, no signature, no query)."""

    # Slotted, not a NamedTuple: on a webhook's first call (docs/benchmark.md, cold start).
    __slots__ = ("form", "genuine", "reason")

    def __init__(self, genuine: bool, reason: str, form: FormParams) -> None:
        self.genuine = genuine
        self.reason = reason
        self.form = form


def _query_variants(query: str) -> Iterator[str]:
    """The query as received first; then the ways a proxy may have re-encoded it (each once).

    A function key in the webhook URL (`?code=abc%3D%3D`) is where this bites: some front ends
    decode or re-encode it before the worker sees it. A generator: the variants are only worked
    out when the query as received did not match.
    """
    yield query
    if not query:
        return
    pairs = parse_qsl(query, keep_blank_values=True)
    seen = {query}
    for variant in (
        urlencode(pairs, quote_via=quote),
        urlencode(pairs, quote_via=quote_plus),
        # As typed into the console: only what must be escaped in a query value is escaped.
        urlencode(pairs, quote_via=lambda value, *_: quote(value, safe="/:@=!$'()*,;~")),
    ):
        if variant not in seen:
            seen.add(variant)
            yield variant


def _signed_payload(req: func.HttpRequest, query: str) -> FormParams | str | None:
    """What Twilio put in the signature besides the URL; None when that cannot be known."""
    body = req.get_body() or b""
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if req.method.upper() in ("GET", "HEAD"):
        return FormParams()
    if not body:
        # No parameters, unless Twilio signed a body's hash: then the empty body is not the one
        # it signed (as twilio's RequestValidator judges it), and the request is refused.
        return None if "bodySHA256" in dict(parse_qsl(query, keep_blank_values=True)) \
            else FormParams()
    if content_type == FORM_CONTENT_TYPE:
        try:
            return parse_form(body)
        except (UnicodeDecodeError, ValueError):
            return None
    # Twilio signs other bodies (JSON) through a bodySHA256 query parameter over the raw body.
    if "bodySHA256" not in dict(parse_qsl(query, keep_blank_values=True)):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def verify(
    req: func.HttpRequest,
    auth_tokens: tuple[str, ...],
    trusted_origin: str | None,
    route_path: str,
    shared_key_secrets: tuple[str, ...] = (),
    local_run: bool = False,
) -> Verdict:
    """Check X-Twilio-Signature against every URL Twilio may have signed and every secret.

    `trusted_origin` is `public_url.configured_origin(...)`; without one, the request's own
    origins are tried only on a local run (`local_run`: shared.common.public_url; a loopback
    request host alone is no evidence of one); `route_path` is the path of the function's own
    route, the only path a signature is checked for. A request that names a SharedKey signature
    (X-Twilio-Webhooks-Signature-Settings) is checked against `shared_key_secrets` with the
    algorithm it names, every other one against `auth_tokens` with HMAC-SHA1, as Twilio signs.
    """
    signature = (req.headers.get("x-twilio-signature") or "").strip()
    try:
        path, query = public_url.path_and_query(req)
    except public_url.UnparsableUrl as error:
        return Verdict(False, str(error), FormParams())
    payload = _signed_payload(req, query)
    form = payload if isinstance(payload, FormParams) else FormParams()
    if not signature:
        return Verdict(False, "no X-Twilio-Signature header", form)
    if len(signature) > MAX_SIGNATURE_LENGTH:
        return Verdict(False, "X-Twilio-Signature header too long to be a signature", form)
    if path.rstrip("/").lower() != route_path.lower():
        # Routes match without regard to case or a trailing slash; any other path is not ours.
        return Verdict(False, f"request path is not this function's route {route_path}", form)
    if payload is None:
        return Verdict(False, "body is neither UTF-8 form data nor covered by bodySHA256", form)
    secrets, algorithm, unusable = _signing(req, auth_tokens, shared_key_secrets)
    if unusable:
        return Verdict(False, unusable, form)

    origins = [trusted_origin] if trusted_origin else public_url.request_origins(req, local_run)
    if not origins:
        return Verdict(
            False,
            "no origin to check the signature for: PUBLIC_BASE_URL and WEBSITE_HOSTNAME are "
            "unset and the request is not a local one; set PUBLIC_BASE_URL to the app's URL",
            form,
        )
    if isinstance(payload, str):
        # A JSON body: its SHA-256 must be the bodySHA256 that the signed URL carries.
        claimed = dict(parse_qsl(query, keep_blank_values=True))["bodySHA256"]
        actual = RequestValidator("").compute_hash(payload)
        if not hmac.compare_digest(actual.encode(), claimed.encode()):
            return Verdict(False, "body does not match its bodySHA256", form)
        payload = FormParams()
    expected = signature.encode()
    validators = [_validator(secret) for secret in secrets]
    # URL by URL, each with every secret: the verdict is the same in any order (genuine when any
    # pair matches), and the likeliest URL is signed with each secret before another is built.
    for url in _candidate_urls(origins, path, query):
        for validator in validators:
            computed = validator.compute_signature(url, payload, algorithm)
            if hmac.compare_digest(computed.encode(), expected):
                return Verdict(True, "signature valid", form)
    if algorithm is not None:
        # Checked with the SharedKey secrets: a wrong or rotated secret is the likelier cause.
        return Verdict(
            False,
            f"{algorithm} SharedKey signature does not match {origins[0]}{path} with "
            f"TWILIO_SHARED_KEY_SECRET{'(_SECONDARY)' if len(secrets) > 1 else ''} (a wrong or "
            f"rotated secret?){_ORIGIN_HINT}",
            form,
        )
    return Verdict(False, f"signature does not match {origins[0]}{path}{_ORIGIN_HINT}", form)


def _signing(
    req: func.HttpRequest, auth_tokens: tuple[str, ...], shared_key_secrets: tuple[str, ...]
) -> tuple[tuple[str, ...], str | None, str | None]:
    """(the secrets to try, the algorithm, None) or ((), None, why none can be tried).

    Which secret signed is the request's to say, not the app's: a forger gains nothing by adding
    or dropping the header, since every path needs a secret it does not have."""
    named = (req.headers.get(SIGNATURE_SETTINGS_HEADER) or "").strip()
    if not named:
        if not auth_tokens:
            return (), None, "no auth token configured"
        return auth_tokens, None, None
    algorithm = get_signature_algorithm(named)
    if algorithm.upper() not in SUPPORTED_ALGORITHMS:
        return (), None, f"SharedKey signature algorithm '{algorithm[:40]}' is not supported"
    if not shared_key_secrets:
        return (), None, (
            f"signed with a SharedKey ({SIGNATURE_SETTINGS_HEADER}) but "
            "TWILIO_SHARED_KEY_SECRET is not set"
        )
    return shared_key_secrets, algorithm.upper(), None


class _Validator(RequestValidator):
    """twilio's RequestValidator, told how to read FormParams: its compute_signature asks
    `get_values` for each field's values, and the stock one tries `getall`, `getlist` and a
    plain lookup in turn (a Python frame per field); FormParams holds the lists it wants."""

    get_values = staticmethod(operator.getitem)

    def compute_signature(
        self, uri: str, params: FormParams | None, algorithm: str | None = None
    ) -> str:
        """twilio's compute_signature, with the fields joined in one step when each has one
        value (every webhook Twilio sends, as parse_form marks it): the string it signs is the
        URL, then each field's name and value in order of name; twilio's loop builds it with two
        sorts per field, which was a fifth of a warm webhook's time through the host, and
        looking at every field's values to find out cost another 1.5 % (BENCHMARKS.md). Any
        other form takes twilio's own loop. The HMAC is twilio's; a property test holds the
        result to the stock RequestValidator's for any form."""
        if params and params.one_value_each:
            uri += "".join([name + params[name][0] for name in sorted(params)])
            params = None
        return str(super().compute_signature(uri, params, algorithm))


@lru_cache(maxsize=8)
def _validator(token: str) -> RequestValidator:
    """One validator per token, built once per process (the settings hold the same tokens; a
    rotation brings a new one)."""
    return _Validator(token)


def _candidate_urls(origins: list[str], path: str, query: str) -> Iterator[str]:
    """Each origin and query variant, as received first, then with and without the default
    port (Twilio signs with or without it, depending on how the URL was configured); each URL
    once, built only when the ones before it did not match."""
    seen: set[str] = set()
    for origin in origins:
        for variant in _query_variants(query):
            url = f"{origin}{path}" + (f"?{variant}" if variant else "")
            if url not in seen:
                seen.add(url)
                yield url
            parsed = urlparse(url)
            for other in (remove_port(parsed), add_port(parsed)):
                if other not in seen:
                    seen.add(other)
                    yield other
