"""send_sms through the real worker (devhost.WorkerHost), with Twilio's API replaced at the HTTP
layer: what reaches Twilio, every refusal before it (Twilio hears nothing), every row of the
error table, and no secret in an answer or a log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from conftest import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN, SECRETS, TWILIO_NUMBER

from devhost.worker_host import HostResponse, WorkerHost

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = "https://myapp.azurewebsites.net"
TO = "+14155550123"
SERVICE = "MG" + "e" * 32
FUNCTION_KEY = "send-sms-function-key-for-tests"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def send(
    host: WorkerHost,
    body: object,
    content_type: str = "application/json",
    key: str | None = None,
) -> HostResponse:
    if isinstance(body, dict) and content_type == "application/json":
        body = json.dumps(body)
    elif isinstance(body, dict):
        body = urlencode(body, doseq=True)
    headers = {"Content-Type": content_type}
    if key:
        headers["x-functions-key"] = key
    return host.request("POST", "/api/send_sms", headers=headers, body=body, base_url=PUBLIC)


@pytest.fixture(autouse=True)
def storage(texting_storage):
    """Every text is checked against the opt-outs in storage first (Azurite here)."""
    return texting_storage


@pytest.fixture(scope="module")
def keyed_host() -> Iterator[WorkerHost]:
    with WorkerHost.start(ROOT, function_keys={"send_sms": FUNCTION_KEY}) as started:
        yield started


# --- sent -------------------------------------------------------------------------------------


def test_the_readme_example_sends_the_message(keyed_host, twilio_api):
    response = send(keyed_host, {"to": TO, "body": "Your table is ready"}, key=FUNCTION_KEY)

    assert response.status == 201, response.body
    assert response.json() == {
        "sid": twilio_api.created[0]["sid"],
        "status": "queued",
        "to": TO,
        "from": TWILIO_NUMBER,
        "messaging_service_sid": None,
        "num_segments": 1,
        "recorded": True,
    }
    [sent] = twilio_api.requests
    assert (sent.method, sent.path) == ("POST", MESSAGES_PATH)
    assert sent.data == {
        "To": TO,
        "From": TWILIO_NUMBER,
        "Body": "Your table is ready",
        "StatusCallback": f"{PUBLIC}/api/message_status#rc=2&rp=ct,5xx",
    }
    assert sent.auth == (ACCOUNT_SID, AUTH_TOKEN)


def test_without_its_function_key_send_sms_is_401(keyed_host, twilio_api):
    assert send(keyed_host, {"to": TO, "body": "x"}).status == 401
    assert send(keyed_host, {"to": TO, "body": "x"}, key="wrong").status == 401
    assert twilio_api.requests == []


def test_a_messaging_service_sends_it_and_picks_the_sender(worker_host, twilio_api, app_settings):
    app_settings.setenv("TWILIO_MESSAGING_SERVICE_SID", SERVICE)

    response = send(worker_host, {"to": TO, "body": "hi"})

    assert response.status == 201
    assert response.json()["messaging_service_sid"] == SERVICE
    assert response.json()["from"] is None
    [sent] = twilio_api.requests
    assert sent.data["MessagingServiceSid"] == SERVICE
    assert "From" not in sent.data


def test_a_messaging_service_needs_no_phone_number(worker_host, twilio_api, app_settings):
    app_settings.setenv("TWILIO_MESSAGING_SERVICE_SID", SERVICE)
    app_settings.setenv("SMS_ALLOWED_COUNTRIES", "US")
    app_settings.delenv("TWILIO_PHONE_NUMBER")

    assert send(worker_host, {"to": TO, "body": "hi"}).status == 201


def test_form_encoded_with_media_urls(worker_host, twilio_api):
    media = ["https://example.com/a.jpg", "https://example.com/b.png"]

    response = send(
        worker_host,
        {"to": TO, "body": "look", "media_url": media},
        "application/x-www-form-urlencoded",
    )

    assert response.status == 201
    assert twilio_api.requests[0].data["MediaUrl"] == media


def test_media_only_needs_no_body(worker_host, twilio_api):
    response = send(worker_host, {"to": TO, "media_url": "https://example.com/a.jpg"})

    assert response.status == 201
    assert twilio_api.requests[0].data["MediaUrl"] == ["https://example.com/a.jpg"]
    assert "Body" not in twilio_api.requests[0].data


def test_from_may_be_a_listed_sender(worker_host, twilio_api, app_settings):
    app_settings.setenv("SMS_SENDERS", "+14155550177,+14155550178")

    assert send(worker_host, {"to": TO, "body": "hi", "from": "+14155550178"}).status == 201
    assert twilio_api.requests[0].data["From"] == "+14155550178"


@pytest.mark.parametrize("to", [TWILIO_NUMBER, "+14155550178"])
def test_the_apps_own_numbers_are_never_texted(worker_host, twilio_api, app_settings, to):
    """A text to one of them comes back to sms_url, whose reply could answer it: a loop, every
    leg billed (found by an attack run)."""
    app_settings.setenv("SMS_SENDERS", "+14155550177,+14155550178")

    refused = send(worker_host, {"to": to, "body": "hi"})

    assert refused.status == 403
    assert "own numbers" in refused.json()["error"]
    assert twilio_api.requests == []


def test_control_characters_but_line_breaks_are_removed(worker_host, twilio_api):
    body = "Line one\r\nLine\x00 two\x1b[31m\tend 👩\u200d👩\u200d👧"

    assert send(worker_host, {"to": TO, "body": body}).status == 201
    assert twilio_api.requests[0].data["Body"] == "Line one\nLine two[31mend 👩\u200d👩\u200d👧"


def test_api_key_authenticates_when_set(worker_host, twilio_api, app_settings):
    app_settings.setenv("TWILIO_API_KEY", API_KEY)
    app_settings.setenv("TWILIO_API_SECRET", API_SECRET)

    assert send(worker_host, {"to": TO, "body": "hi"}).status == 201
    assert twilio_api.requests[0].auth == (API_KEY, API_SECRET)


# --- refused before Twilio ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "env", "status", "words"),
    [
        ({"to": TO}, {}, 400, "'body' is required"),
        ({"to": TO, "body": "\x00\x07"}, {}, 400, "'body' is required"),
        ({"to": TO, "body": "x" * 1601}, {}, 400, "1,600 characters"),
        ({"body": "hi"}, {}, 400, "'to' is required"),
        ({"to": "4155550123", "body": "hi"}, {}, 400, "E.164"),
        ({"to": TO, "body": "hi", "media_url": "http://example.com/a.jpg"}, {}, 400, "https://"),
        ({"to": TO, "body": "hi", "media_url": ["https://e.com/a"] * 11}, {}, 400, "at most 10"),
        ({"to": TO, "body": "hi", "media_url": [1]}, {}, 400, "list of strings"),
        ({"to": TO, "body": "hi", "Body": "x"}, {}, 400, "Unknown field 'Body'"),
        ({"to": TO, "body": ["a"]}, {}, 400, "must be a string"),
        ({"to": "+19005550100", "body": "hi"}, {}, 403, "premium-rate"),
        ({"to": "+15005550006", "body": "hi"}, {}, 403, "personal"),
        ({"to": "+2693901234", "body": "hi"}, {}, 403, "SMS_ALLOWED_COUNTRIES allows: US"),
        ({"to": "+447400123456", "body": "hi"}, {"CALL_ALLOWED_COUNTRIES": "GB"}, 403, "GB"),
        ({"to": "+447640123456", "body": "hi"}, {"SMS_ALLOWED_COUNTRIES": "GB"}, 403, "pager"),
        ({"to": TO, "body": "hi", "from": "+14155550199"}, {}, 403, "SMS_SENDERS"),
        (
            {"to": TO, "body": "hi", "from": "+14155550199"},
            {"CALLER_IDS": "+14155550199"},
            403,
            "SMS_SENDERS",
        ),
        (
            {"to": TO, "body": "hi", "from": TWILIO_NUMBER},
            {"TWILIO_MESSAGING_SERVICE_SID": SERVICE},
            403,
            "Messaging Service",
        ),
    ],
    ids=[
        "no-body",
        "body-only-control-characters",
        "body-too-long",
        "no-to",
        "not-e164",
        "media-not-https",
        "too-much-media",
        "media-not-strings",
        "unknown-field",
        "body-not-a-string",
        "premium-rate",
        "personal",
        "country-default",
        "call-countries-do-not-apply",
        "pager",
        "from-not-a-sender",
        "caller-ids-cannot-send-sms",
        "from-with-messaging-service",
    ],
)
def test_refusals_never_reach_twilio(worker_host, twilio_api, app_settings, body, env, status, words):
    for name, value in env.items():
        app_settings.setenv(name, value)

    response = send(worker_host, body)

    assert response.status == status, response.body
    assert words in response.json()["error"]
    assert twilio_api.requests == []


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        ("{not json", "application/json", 400, "not valid JSON"),
        ("[" * 15000, "application/json", 400, "not valid JSON"),
        ("to=%2B14155550123&to=%2B1415", "application/x-www-form-urlencoded", 400, "more than once"),
        ("to=+14155550123&body=hi", "application/x-www-form-urlencoded", 400, "%2B"),
        ('{"to": "+14155550123"}', "text/plain", 415, "application/json"),
        ("x" * (16 * 1024 + 1), "application/json", 413, "16 KB"),
    ],
    ids=["bad-json", "deep-json", "repeated", "plus-as-space", "content-type", "too-large"],
)
def test_bad_bodies_are_refused(worker_host, twilio_api, body, content_type, status, words):
    response = send(worker_host, body, content_type)

    assert response.status == status
    assert words in response.json()["error"]
    assert twilio_api.requests == []


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"TWILIO_MESSAGING_SERVICE_SID": "MG123"}, ["TWILIO_MESSAGING_SERVICE_SID"]),
        ({"SMS_SENDERS": "+1415"}, ["SMS_SENDERS"]),
        ({"SMS_ALLOWED_COUNTRIES": "USA"}, ["SMS_ALLOWED_COUNTRIES"]),
        ({"TWILIO_PHONE_NUMBER": ""}, ["TWILIO_PHONE_NUMBER"]),
        ({"TWILIO_API_SECRET": "@Microsoft.KeyVault(SecretUri=https://v/)"}, ["TWILIO_API_SECRET"]),
    ],
    ids=["service-sid", "senders", "countries", "no-phone-number", "key-vault-reference"],
)
def test_a_misconfiguration_is_500_naming_the_setting(
    worker_host, twilio_api, app_settings, env, names
):
    if "TWILIO_API_SECRET" in env:
        app_settings.setenv("TWILIO_API_KEY", API_KEY)
    for name, value in env.items():
        app_settings.setenv(name, value)

    response = send(worker_host, {"to": TO, "body": "hi"})

    assert response.status == 500
    assert response.json()["settings"] == names
    assert twilio_api.requests == []


# --- Twilio's answers: the error table -----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (21610, "replied STOP"),
        (21408, "Geo Permissions"),
        (21614, "not a mobile number"),
        (21606, "not a message-capable Twilio number"),
        (21659, "not a Twilio number of this account"),
        (21212, "sender is not valid"),
        (21211, "Twilio's own sentence"),
    ],
)
def test_twilio_refusals_are_422_with_a_sentence_to_act_on(worker_host, twilio_api, code, words):
    twilio_api.error(400, code, "Twilio's own sentence")

    response = send(worker_host, {"to": TO, "body": "hi"})

    assert response.status == 422
    body = response.json()
    assert words in body["error"]
    assert body["twilio_code"] == code
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert len(twilio_api.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_are_502(worker_host, twilio_api, status):
    twilio_api.error(status, 20003, "Authenticate")

    response = send(worker_host, {"to": TO, "body": "hi"})

    assert response.status == 502
    assert "credentials" in response.json()["error"]


def test_rate_limit_is_503_with_retry_after(worker_host, twilio_api):
    twilio_api.error(429, 20429, "Too Many Requests")

    response = send(worker_host, {"to": TO, "body": "hi"})

    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert "rate of messages" in response.json()["error"]


def test_twilio_server_error_is_502_and_says_it_may_have_been_sent(worker_host, twilio_api):
    twilio_api.error(503, 20503, "Service Unavailable")

    response = send(worker_host, {"to": TO, "body": "hi"})

    assert response.status == 502
    assert "may still have been sent" in response.json()["error"]
    assert len(twilio_api.requests) == 1  # never retried


def test_no_answer_within_the_timeout_is_504_and_never_retried(
    worker_host, twilio_api, app_settings
):
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.05")
    twilio_api.delay = 0.5

    response = send(worker_host, {"to": TO, "body": "hi"})

    assert response.status == 504
    assert "Messaging logs" in response.json()["error"]
    assert len(twilio_api.requests) == 1


def test_unreachable_twilio_is_502(worker_host, twilio_api):
    twilio_api.fail(aiohttp.ClientConnectionError("connection refused"))

    response = send(worker_host, {"to": TO, "body": "hi"})

    assert response.status == 502
    assert "Could not reach Twilio" in response.json()["error"]


def test_an_unexpected_failure_is_500_without_a_traceback(worker_host, twilio_api):
    twilio_api.fail(RuntimeError("boom"))

    response = send(worker_host, {"to": TO, "body": "hi"})

    assert response.status == 500
    assert response.json() == {
        "error": "The message could not be sent because of an internal error."
    }


def test_no_secret_or_full_number_in_answers_or_logs(worker_host, twilio_api, app_settings, caplog):
    caplog.set_level(logging.DEBUG)
    app_settings.setenv("TWILIO_API_KEY", API_KEY)
    app_settings.setenv("TWILIO_API_SECRET", API_SECRET)
    twilio_api.error(401, 20003, "Authenticate")
    bodies = [send(worker_host, {"to": TO, "body": "hi"}).body]
    bodies.append(send(worker_host, {"to": TO, "body": "hi"}).body)
    twilio_api.error(400, 21610, "Attempt to send to unsubscribed recipient")
    bodies.append(send(worker_host, {"to": TO, "body": "hi"}).body)
    app_settings.setenv("TWILIO_API_SECRET", "@Microsoft.KeyVault(SecretUri=https://vault/s/)")
    bodies.append(send(worker_host, {"to": TO, "body": "hi"}).body)

    seen = caplog.text + b"".join(bodies).decode()
    assert "send_sms" in caplog.text
    for secret in (*SECRETS, "vault/s/"):
        assert secret not in seen
    assert TO not in caplog.text
