"""Webhook signatures behind Azure's front ends, and make_call's abuse limits, through the real
Python worker (devhost.WorkerHost): genuine requests are never refused, forged ones always are,
and no secret or signature reaches a response or a log line."""

from __future__ import annotations

import json
import logging
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import (
    AUTH_TOKEN,
    OTHER_TOKEN,
    SECONDARY_TOKEN,
    SECRETS,
    SHARED_KEY_SECRET,
    SHARED_KEY_SECRET_SECONDARY,
    SMS_PARAMS,
    VOICE_PARAMS,
)
from twilio.request_validator import RequestValidator

from devhost.worker_host import HostResponse, WorkerHost
from shared.webhooks.twiml import APOLOGY

ROOT = Path(__file__).resolve().parent.parent
HOST = "myapp.azurewebsites.net"
PUBLIC = f"https://{HOST}"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def host(worker_host: WorkerHost) -> WorkerHost:
    """The repo's app, loaded once per session through the real worker."""
    return worker_host


@dataclass
class Exchange:
    """Everything sent and answered in one test, checked afterwards for leaked secrets."""

    host: WorkerHost
    signatures: list[str] = field(default_factory=list)
    responses: list[HostResponse] = field(default_factory=list)

    def send(
        self,
        path: str,
        params: dict[str, str] | list[tuple[str, str]] | None = None,
        *,
        method: str = "POST",
        seen_at: str = PUBLIC,
        signed_url: str | None = None,
        signed_params: object = None,
        token: str = AUTH_TOKEN,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        signature: str | None = None,
        algorithm: str | None = None,
    ) -> HostResponse:
        """Send `params` to `path` as the worker sees it at `seen_at`, signed by Twilio for
        `signed_url` (default: PUBLIC + path) over `signed_params` (default: the params)."""
        params = params if params is not None else {}
        pairs = list(params.items()) if isinstance(params, dict) else list(params)
        if signature is None:
            to_sign = signed_params if signed_params is not None else _multi(pairs)
            if method == "GET":
                to_sign = {}
            signature = RequestValidator(token).compute_signature(
                signed_url or PUBLIC + path, to_sign, algorithm
            )
        self.signatures.append(signature)
        all_headers = {"Content-Type": FORM, **(headers or {})}
        if signature:
            all_headers["X-Twilio-Signature"] = signature
        if body is None:
            body = b"" if method == "GET" else urlencode(pairs).encode()
        response = self.host.request(method, path, headers=all_headers, body=body, base_url=seen_at)
        self.responses.append(response)
        return response


class _Multi(dict):
    def getall(self, key: str) -> list[str]:
        return self[key]


def _multi(pairs: list[tuple[str, str]]) -> _Multi:
    grouped = _Multi()
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


@pytest.fixture
def twilio(host: WorkerHost, caplog: pytest.LogCaptureFixture) -> Iterator[Exchange]:
    """Sends requests; afterwards, no response and no log line holds a token or a signature."""
    caplog.set_level(logging.DEBUG)
    exchange = Exchange(host)
    yield exchange
    leaks = [s for s in (*SECRETS, *(s for s in exchange.signatures if len(s) >= 8))]
    # At teardown caplog.text holds only teardown's records: read the test's own.
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.get_records("call"))
    bodies = b"".join(r.body for r in exchange.responses).decode("utf-8", "replace")
    for secret in leaks:
        assert secret not in text, "a secret or signature reached the logs"
        assert secret not in bodies, "a secret or signature reached a response"


def app_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("shared")]


def assert_answered(response: HostResponse, tag: str = "Say") -> None:
    assert response.status == 200, response.error
    assert f"<{tag}>".encode() in response.body


# --- accepted ---------------------------------------------------------------------------------


def test_1_worker_sees_http_but_twilio_signed_https(twilio, app_settings):
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)

    response = twilio.send("/api/voice_url", VOICE_PARAMS, seen_at=f"http://{HOST}")

    assert_answered(response)


@pytest.mark.parametrize(
    ("public_base_url", "signed_url"),
    [
        (PUBLIC, f"{PUBLIC}:443/api/voice_url"),
        (f"{PUBLIC}:443", f"{PUBLIC}/api/voice_url"),
        (f"{PUBLIC}:443", f"{PUBLIC}:443/api/voice_url"),
        (None, f"{PUBLIC}:443/api/voice_url"),
    ],
    ids=["port-signed", "port-configured", "port-both", "port-signed-no-base-url"],
)
def test_2_default_port_signed_or_not(twilio, app_settings, public_base_url, signed_url):
    if public_base_url:
        app_settings.setenv("PUBLIC_BASE_URL", public_base_url)

    response = twilio.send("/api/voice_url", VOICE_PARAMS, signed_url=signed_url)

    assert_answered(response)


@pytest.mark.parametrize(
    ("seen_query", "signed_query"),
    [
        ("code=abc%3D%3D", "code=abc%3D%3D"),
        ("code=abc==", "code=abc%3D%3D"),
        ("code=abc%3D%3D", "code=abc=="),
        ("code=abc%3d%3d", "code=abc%3D%3D"),
    ],
    ids=["as-configured", "decoded-by-proxy", "encoded-by-proxy", "lowercased-escapes"],
)
def test_3_function_key_in_the_webhook_url(twilio, app_settings, seen_query, signed_query):
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)

    response = twilio.send(
        f"/api/voice_url?{seen_query}",
        VOICE_PARAMS,
        signed_url=f"{PUBLIC}/api/voice_url?{signed_query}",
    )

    assert_answered(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Proto": "https", "X-Forwarded-Host": HOST},
        {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": f"spoofed.example, {HOST}"},
        {"X-Arr-Ssl": "2048|256|...", "Disguised-Host": HOST},
    ],
    ids=["forwarded", "forwarded-chain", "app-service"],
)
def test_4_without_public_base_url_a_local_run_takes_the_origin_from_forwarding_headers(
    twilio, app_settings, headers
):
    app_settings.setenv("WEBSITE_HOSTNAME", "localhost:7071")  # a local run (func start's)
    response = twilio.send(
        "/api/voice_url", VOICE_PARAMS, seen_at="http://127.0.0.1:7071", headers=headers
    )

    assert_answered(response)


@pytest.mark.parametrize("website_hostname", [None, "localhost:7071"], ids=["unset", "func"])
@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Proto": "https", "X-Forwarded-Host": HOST},
        {"X-Arr-Ssl": "2048|256|...", "Disguised-Host": HOST},
        {"Host": HOST},
    ],
    ids=["forwarded", "app-service", "host"],
)
def test_4_forwarding_headers_count_only_on_evidence_of_a_local_run(
    twilio, app_settings, headers, website_hostname
):
    """No PUBLIC_BASE_URL and no WEBSITE_HOSTNAME, at a host that is not loopback (a deployment
    that lacks both): the request's own headers cannot say which origin Twilio signed for, or
    another app's signature would pass. func start's loopback WEBSITE_HOSTNAME is evidence."""
    if website_hostname is None:
        app_settings.delenv("WEBSITE_HOSTNAME")
    else:
        app_settings.setenv("WEBSITE_HOSTNAME", website_hostname)

    response = twilio.send(
        "/api/voice_url", VOICE_PARAMS, seen_at="http://10.0.0.4:8080", headers=headers
    )

    if website_hostname is None:
        assert response.status == 403
    else:
        assert_answered(response)


def test_4_with_public_base_url_only_it_counts(twilio, app_settings, caplog):
    """A request Twilio signed for another app on the same account is a replay here."""
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    other = "other-app.example.com"

    response = twilio.send(
        "/api/voice_url",
        VOICE_PARAMS,
        seen_at=f"https://{other}",
        signed_url=f"https://{other}/api/voice_url",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": other},
    )

    assert response.status == 403


def test_5_blank_values_repeated_keys_and_non_ascii_text(twilio):
    params = [
        *SMS_PARAMS.items(),
        ("CallToken", ""),
        ("MediaUrl0", "https://example.com/b.jpg"),
        ("MediaUrl0", "https://example.com/a.jpg"),
        ("FromCity", "Zürich"),
    ]
    params = [(k, "Café ☕️ 🎉 ñandú" if k == "Body" else v) for k, v in params]

    response = twilio.send("/api/sms_url", params)

    assert_answered(response, "Message")


def test_6_get_webhook_with_parameters_in_the_query(twilio):
    path = "/api/voice_url?" + urlencode(VOICE_PARAMS)

    response = twilio.send(path, method="GET")

    assert_answered(response)


def test_7_json_body_signed_with_body_sha256(twilio):
    body = json.dumps({"event": "message.received", "text": "héllo"}).encode()
    digest = RequestValidator(AUTH_TOKEN).compute_hash(body.decode())
    path = f"/api/sms_url?bodySHA256={digest}"

    response = twilio.send(
        path, headers={"Content-Type": "application/json"}, body=body, signed_params={}
    )
    tampered = twilio.send(
        path,
        headers={"Content-Type": "application/json"},
        body=body.replace(b"llo", b"LLO"),
        signed_params={},
    )

    # Answered (TwiML, no reply: a body without a From names nobody to reply to), not refused.
    assert response.status == 200, response.error
    assert ET.fromstring(response.body).tag == "Response"
    assert tampered.status == 403


def test_7_a_body_sha256_request_with_its_body_removed_is_refused(twilio):
    """The signature covers the URL and its bodySHA256; an empty body is not the one hashed (as
    twilio's RequestValidator judges it), so a replay that drops the body is refused."""
    body = json.dumps({"event": "message.received"}).encode()
    digest = RequestValidator(AUTH_TOKEN).compute_hash(body.decode())

    for path in (f"/api/sms_url?bodySHA256={digest}", f"/api/call_status?bodySHA256={digest}"):
        response = twilio.send(path, headers={"Content-Type": "application/json"}, body=b"",
                               signed_params={})
        assert response.status == 403, path


@pytest.mark.parametrize("token", [AUTH_TOKEN, SECONDARY_TOKEN])
def test_8_either_token_is_accepted_while_rotating(twilio, app_settings, token):
    app_settings.setenv("TWILIO_AUTH_TOKEN_SECONDARY", SECONDARY_TOKEN)

    assert_answered(twilio.send("/api/voice_url", VOICE_PARAMS, token=token))


# --- SharedKey signatures (a Twilio Webhook Rule signs with its Setting's key) -----------------

SIGNATURE_SETTINGS = "X-Twilio-Webhooks-Signature-Settings"
SHARED_KEY_ID = "webhooks_sharedkey_" + "c" * 26


def shared_key_header(algorithm: str = "HMAC_SHA256") -> dict[str, str]:
    return {SIGNATURE_SETTINGS: f"key={SHARED_KEY_ID},algorithm={algorithm}"}


@pytest.mark.parametrize(
    ("path", "params", "tag"),
    [("/api/voice_url", VOICE_PARAMS, "Say"), ("/api/sms_url", SMS_PARAMS, "Message")],
)
@pytest.mark.parametrize("secret", [SHARED_KEY_SECRET, SHARED_KEY_SECRET_SECONDARY])
def test_9_a_webhook_signed_with_a_shared_key_is_accepted(
    twilio, app_settings, path, params, tag, secret
):
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    app_settings.setenv("TWILIO_SHARED_KEY_SECRET", SHARED_KEY_SECRET)
    app_settings.setenv("TWILIO_SHARED_KEY_SECRET_SECONDARY", SHARED_KEY_SECRET_SECONDARY)

    response = twilio.send(
        path, params, token=secret, algorithm="HMAC_SHA256", headers=shared_key_header()
    )

    assert_answered(response, tag)


def test_9_a_shared_key_setting_may_name_hmac_sha1(twilio, app_settings):
    app_settings.setenv("TWILIO_SHARED_KEY_SECRET", SHARED_KEY_SECRET)

    response = twilio.send(
        "/api/voice_url",
        VOICE_PARAMS,
        token=SHARED_KEY_SECRET,
        algorithm="HMAC_SHA1",
        headers=shared_key_header("HMAC_SHA1"),
    )

    assert_answered(response)


def test_9_auth_token_webhooks_still_pass_when_a_shared_key_is_set(twilio, app_settings):
    """Webhooks no Rule matches (another URL, a status callback) are signed with the token."""
    app_settings.setenv("TWILIO_SHARED_KEY_SECRET", SHARED_KEY_SECRET)

    assert_answered(twilio.send("/api/voice_url", VOICE_PARAMS))


# (signed with, algorithm, the header's algorithm or None for no header, reason logged)
SHARED_KEY_REFUSALS = {
    # The header says SharedKey: an auth-token signature (Twilio's usual one) is not accepted.
    "header-but-the-usual-token-signature": (
        AUTH_TOKEN, None, "HMAC_SHA256", "HMAC_SHA256 SharedKey signature does not match"
    ),
    "header-but-a-sha256-token-signature": (
        AUTH_TOKEN, "HMAC_SHA256", "HMAC_SHA256", "HMAC_SHA256 SharedKey signature does not match"
    ),
    "header-but-sha1-over-a-sha256-claim": (
        SHARED_KEY_SECRET, "HMAC_SHA1", "HMAC_SHA256",
        "HMAC_SHA256 SharedKey signature does not match",
    ),
    # Without the header the auth token is expected: dropping it is no way in.
    "shared-key-signature-without-the-header": (
        SHARED_KEY_SECRET, "HMAC_SHA256", None, f"signature does not match {PUBLIC}"
    ),
    "another-shared-key": (
        OTHER_TOKEN, "HMAC_SHA256", "HMAC_SHA256", "HMAC_SHA256 SharedKey signature does not match"
    ),
    "unsupported-algorithm": (
        SHARED_KEY_SECRET, "HMAC_SHA256", "HMAC_SHA512",
        "SharedKey signature algorithm 'HMAC_SHA512' is not supported",
    ),
}


@pytest.mark.parametrize("case", list(SHARED_KEY_REFUSALS))
def test_forged_shared_key_requests_are_refused(twilio, app_settings, caplog, case):
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    app_settings.setenv("TWILIO_SHARED_KEY_SECRET", SHARED_KEY_SECRET)
    secret, algorithm, header_algorithm, reason = SHARED_KEY_REFUSALS[case]
    headers = shared_key_header(header_algorithm) if header_algorithm else None

    response = twilio.send(
        "/api/voice_url", VOICE_PARAMS, token=secret, algorithm=algorithm, headers=headers
    )

    assert response.status == 403
    assert response.body == b""
    [line] = app_lines(caplog)
    assert line.levelno == logging.WARNING
    assert "outcome=refused" in line.getMessage()
    assert reason in line.getMessage()


def test_a_shared_key_webhook_without_its_secret_set_is_refused_naming_the_setting(
    twilio, app_settings, caplog
):
    response = twilio.send(
        "/api/sms_url",
        SMS_PARAMS,
        token=SHARED_KEY_SECRET,
        algorithm="HMAC_SHA256",
        headers=shared_key_header(),
    )

    assert response.status == 403
    [line] = app_lines(caplog)
    assert "TWILIO_SHARED_KEY_SECRET is not set" in line.getMessage()


# --- refused: 403, empty body, one warning line ------------------------------------------------


def _refusals():
    voice = "/api/voice_url"
    tampered = {**VOICE_PARAMS, "From": "+14155550999"}
    added = {**VOICE_PARAMS, "Digits": "1"}
    removed = {k: v for k, v in VOICE_PARAMS.items() if k != "Direction"}
    return {
        "missing-header": dict(path=voice, params=VOICE_PARAMS, signature=""),
        "tampered-parameter": dict(path=voice, params=tampered, signed_params=VOICE_PARAMS),
        "added-parameter": dict(path=voice, params=added, signed_params=VOICE_PARAMS),
        "removed-parameter": dict(path=voice, params=removed, signed_params=VOICE_PARAMS),
        "another-token": dict(path=voice, params=VOICE_PARAMS, token=OTHER_TOKEN),
        "another-path": dict(path=voice, params=VOICE_PARAMS, signed_url=f"{PUBLIC}/api/other"),
        "another-host": dict(
            path=voice, params=VOICE_PARAMS, signed_url="https://evil.example.com/api/voice_url"
        ),
        "voice-replayed-to-sms": dict(
            path="/api/sms_url", params=VOICE_PARAMS, signed_url=f"{PUBLIC}/api/voice_url"
        ),
        "garbage-header": dict(path=voice, params=VOICE_PARAMS, signature="not a signature ✗"),
        "oversized-header": dict(path=voice, params=VOICE_PARAMS, signature="A" * 10_000),
        "query-tampered": dict(
            path="/api/voice_url?message=Send+money",
            params=VOICE_PARAMS,
            signed_url=f"{PUBLIC}{voice}",
        ),
    }


@pytest.mark.parametrize("case", list(_refusals()))
def test_forged_requests_are_refused(twilio, app_settings, caplog, case):
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    kwargs = _refusals()[case]

    response = twilio.send(kwargs.pop("path"), kwargs.pop("params"), **kwargs)

    assert response.status == 403
    assert response.body == b""
    [line] = app_lines(caplog)
    assert line.levelno == logging.WARNING
    assert "outcome=refused" in line.getMessage()


def test_no_auth_token_configured_never_answers(twilio, app_settings, caplog):
    app_settings.delenv("TWILIO_AUTH_TOKEN")
    app_settings.setenv("TWILIO_AUTH_TOKEN_SECONDARY", SECONDARY_TOKEN)

    response = twilio.send("/api/voice_url", VOICE_PARAMS, token=SECONDARY_TOKEN)

    assert response.status == 403
    assert response.body == b""
    [line] = app_lines(caplog)
    assert "TWILIO_AUTH_TOKEN is not set" in line.getMessage()


# --- a malformed setting: the signature still holds, a genuine webhook gets the safe answer -----

MALFORMED = {"VOICE_NAME": "Polly Joanna<b>", "VOICE_LANGUAGE": "english please"}
CALL_STATUS_PARAMS = {"CallSid": VOICE_PARAMS["CallSid"], "AccountSid": VOICE_PARAMS["AccountSid"],
                      "CallStatus": "ringing", "SequenceNumber": "1"}


def said(response: HostResponse) -> list[tuple[str, dict[str, str], str]]:
    """Each verb of a TwiML answer: (tag, attributes, text)."""
    return [(verb.tag, dict(verb.attrib), verb.text or "") for verb in ET.fromstring(response.body)]


@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("path", ["/api/voice_url", "/api/call_flow?step=welcome&after=menu",
                                  "/api/client_voice"])
def test_a_malformed_setting_gives_a_genuine_call_the_apology_never_a_500(
    twilio, app_settings, caplog, name, path
):
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    app_settings.setenv(name, MALFORMED[name])

    response = twilio.send(path, VOICE_PARAMS)

    assert response.status == 200, response.error
    assert response.headers["Content-Type"].startswith("text/xml")
    # Twilio's default voice: the voice settings are what is broken.
    assert said(response) == [("Say", {}, APOLOGY), ("Hangup", {}, "")]
    errors = [r.getMessage() for r in app_lines(caplog) if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"{name} is malformed" in errors[0]
    assert MALFORMED[name] not in "\n".join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("path", ["/api/voice_url", "/api/sms_url", "/api/call_status"])
def test_a_malformed_setting_still_refuses_a_forged_webhook(twilio, app_settings, caplog, path):
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    app_settings.setenv("VOICE_LANGUAGE", MALFORMED["VOICE_LANGUAGE"])

    response = twilio.send(path, VOICE_PARAMS, token=OTHER_TOKEN)

    assert response.status == 403
    assert response.body == b""
    assert any("outcome=refused" in r.getMessage() for r in app_lines(caplog))


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_call_setting_never_keeps_a_status_callback_from_being_kept(
    twilio, app_settings, caplog, azurite_storage, name
):
    """The status callbacks read only the signing settings and CALL_FLOW: nothing a caller hears
    can stop a call's progress from being recorded."""
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    app_settings.setenv(name, MALFORMED[name])
    sid = "CA" + uuid.uuid4().hex

    response = twilio.send("/api/call_status", {**CALL_STATUS_PARAMS, "CallSid": sid})

    assert response.status == 204, response.error
    assert not [r for r in app_lines(caplog) if r.levelno == logging.ERROR]
    record = twilio.host.request("GET", f"/api/calls/{sid}", base_url=PUBLIC)
    assert record.status == 200 and record.json()["status"] == "ringing"


def test_a_malformed_public_base_url_fails_closed(twilio, app_settings, caplog):
    """The origin Twilio signs is unknown: no request can be proven genuine."""
    app_settings.setenv("PUBLIC_BASE_URL", "https://myapp.azurewebsites.net#")

    response = twilio.send("/api/voice_url", VOICE_PARAMS, signed_url=f"{PUBLIC}/api/voice_url")

    assert response.status == 403
    assert response.body == b""
    errors = [r.getMessage() for r in app_lines(caplog) if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "PUBLIC_BASE_URL is malformed" in errors[0]


def test_a_malformed_website_hostname_is_no_problem_where_public_base_url_names_the_origin(
    twilio, app_settings
):
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    app_settings.setenv("WEBSITE_HOSTNAME", "bad host!")

    assert_answered(twilio.send("/api/voice_url", VOICE_PARAMS))
    app_settings.delenv("PUBLIC_BASE_URL")
    assert twilio.send("/api/voice_url", VOICE_PARAMS).status == 403  # then it is the origin


# --- make_call cannot be turned into a toll-fraud machine --------------------------------------

FUNCTION_KEY = "make-call-function-key-for-tests"


@pytest.fixture(scope="module")
def keyed_host() -> Iterator[WorkerHost]:
    """The app as Azure runs it: make_call requires its function key."""
    with WorkerHost.start(ROOT, function_keys={"make_call": FUNCTION_KEY}) as started:
        yield started


def make_call(
    host: WorkerHost, body: dict | bytes, key: str | None = FUNCTION_KEY, query: str = ""
):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["x-functions-key"] = key
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return host.request(
        "POST", f"/api/make_call{query}", headers=headers, body=data, base_url=PUBLIC
    )


def test_make_call_requires_its_function_key(keyed_host, twilio_api):
    assert make_call(keyed_host, {"to": "+14155550123"}, key=None).status == 401
    assert make_call(keyed_host, {"to": "+14155550123"}, key="wrong").status == 401
    assert twilio_api.requests == []
    assert make_call(keyed_host, {"to": "+14155550123"}).status == 201
    assert (
        make_call(
            keyed_host, {"to": "+14155550123"}, key=None, query=f"?code={FUNCTION_KEY}"
        ).status
        == 201
    )
    assert len(twilio_api.requests) == 2


@pytest.mark.parametrize(
    ("body", "env", "status", "words"),
    [
        ({"to": "+19002345678"}, {}, 403, "premium-rate"),
        ({"to": "+33884012345"}, {"CALL_ALLOWED_COUNTRIES": "US,FR"}, 403, "shared-cost"),
        ({"to": "+445512345678"}, {"CALL_ALLOWED_COUNTRIES": "GB"}, 403, "universal access"),
        ({"to": "+447640123456"}, {"CALL_ALLOWED_COUNTRIES": "GB"}, 403, "pager"),
        ({"to": "+15005550006"}, {}, 403, "personal"),
        ({"to": "+2693901234"}, {}, 403, "KM"),  # Comoros: a classic revenue-share destination
        ({"to": "+4915123456789"}, {"CALL_ALLOWED_COUNTRIES": "US,FR"}, 403, "DE"),
        ({"to": "+14155550123", "from": "+14155550199"}, {}, 403, "CALLER_IDS"),
        ({"to": "+14155550123", "message": "x" * 1001}, {}, 400, "1000 characters"),
        (b'{"to": "+14155550123", "message": "' + b"x" * 16_400 + b'"}', {}, 413, "16 KB"),
    ],
    ids=[
        "premium-rate",
        "shared-cost",
        "uan",
        "pager",
        "personal",
        "country-default",
        "country-listed",
        "from-not-allowed",
        "message-too-long",
        "body-too-large",
    ],
)
def test_make_call_refuses_costly_or_foreign_destinations(
    keyed_host, twilio_api, app_settings, body, env, status, words
):
    for name, value in env.items():
        app_settings.setenv(name, value)

    response = make_call(keyed_host, body)

    assert response.status == status
    assert words in response.json()["error"]
    assert twilio_api.requests == []


def test_make_call_strips_control_characters_from_the_message(keyed_host, twilio_api):
    response = make_call(keyed_host, {"to": "+14155550123", "message": "Hi\u202e\x07 there\r\nBob"})

    assert response.status == 201
    assert twilio_api.requests[0].data["Url"].endswith("?message=Hi+there+Bob")


def test_make_call_never_retries_a_call_creation(keyed_host, twilio_api, app_settings):
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.05")
    twilio_api.delay = 0.5

    assert make_call(keyed_host, {"to": "+14155550123"}).status == 504
    twilio_api.delay = 0
    twilio_api.error(503, 20503, "Service Unavailable")
    assert make_call(keyed_host, {"to": "+14155550123"}).status == 502
    assert len(twilio_api.requests) == 2  # one request per make_call, never a second attempt


def test_make_call_logs_and_answers_hold_no_secret(keyed_host, twilio_api, app_settings, caplog):
    caplog.set_level(logging.DEBUG)
    app_settings.setenv("TWILIO_API_KEY", "SK" + "b" * 32)
    app_settings.setenv("TWILIO_API_SECRET", SECRETS[2])
    app_settings.setenv("TWILIO_AUTH_TOKEN_SECONDARY", SECONDARY_TOKEN)
    twilio_api.error(401, 20003, "Authenticate")
    bodies = [make_call(keyed_host, {"to": "+14155550123"}).body]
    twilio_api.error(400, 21211, "The 'To' number +14155550123 is not a valid phone number.")
    bodies.append(make_call(keyed_host, {"to": "+14155550123"}).body)
    app_settings.delenv("TWILIO_PHONE_NUMBER")
    bodies.append(make_call(keyed_host, {"to": "+14155550123"}).body)

    seen = caplog.text + b"".join(bodies).decode()
    assert "make_call" in caplog.text  # the capture did see the function's log lines
    for secret in (*SECRETS, FUNCTION_KEY):
        assert secret not in seen
    assert "+14155550123" not in caplog.text  # full numbers stay out of the logs


# --- a page on another website cannot call or text through the app ----------------------------

# What a hidden form on another site posts (form content types need no CORS preflight).
CROSS_SITE_FORMS = {
    "/api/make_call": {"to": "+14155550123"},
    "/api/send_sms": {"to": "+14155550123", "body": "Win a prize"},
    "/api/broadcasts": {"kind": "sms", "to": "+14155550123", "body": "Win a prize"},
    "/api/optouts/clear": {"sender": "+14155550100", "number": "+14155550123",
                           "reason": "asked"},
}


def form_post(host: WorkerHost, path: str, fields: dict[str, str], **headers: str
              ) -> HostResponse:
    return host.request("POST", path, headers={"Content-Type": FORM, **headers},
                        body=urlencode(fields), base_url="http://127.0.0.1:7071")


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Cross-Site"])
@pytest.mark.parametrize("path", list(CROSS_SITE_FORMS))
def test_a_page_on_another_site_cannot_act_through_an_app_without_keys(
    worker_host, twilio_api, texting_storage, path, site
):
    """The local host's default has no keys: a form another site's page submits through the
    developer's browser is refused before anything is read, stored or sent."""
    response = form_post(worker_host, path, CROSS_SITE_FORMS[path],
                         **{"Sec-Fetch-Site": site, "Origin": "https://prizes.example"})

    assert response.status == 403
    assert "another website" in response.json()["error"]
    assert twilio_api.requests == []


@pytest.mark.parametrize("headers", [
    {}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
    {"Sec-Fetch-Site": "cross-site", "x-functions-key": "the caller's own key"},
], ids=["curl", "the-console", "typed-by-the-user", "cross-site-with-the-key-header"])
def test_the_callers_own_requests_still_act(worker_host, twilio_api, texting_storage, headers):
    response = form_post(worker_host, "/api/send_sms", CROSS_SITE_FORMS["/api/send_sms"],
                         **headers)

    assert response.status == 201, response.body
    assert len(twilio_api.creates) == 1
