"""make_call through its `main`, with Twilio's API replaced at the HTTP layer."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from conftest import (
    ACCOUNT_SID,
    API_KEY,
    API_SECRET,
    AUTH_TOKEN,
    TWILIO_NUMBER,
    http_request,
    run_app,
)

from make_call import main

URL = "https://myapp.azurewebsites.net/api/make_call"
TO = "+14155550123"


def call(body: object, content_type: str = "application/json", url: str = URL, **headers: str):
    if content_type == "application/json" and not isinstance(body, bytes | str):
        body = json.dumps(body)
    elif content_type == "application/x-www-form-urlencoded" and isinstance(body, dict):
        body = urlencode(body)
    req = http_request("POST", url, {"Content-Type": content_type, **headers}, body)
    return run_app(main(req))


def payload(response) -> dict:
    assert response.mimetype == "application/json"
    return json.loads(response.get_body())


# --- success ---------------------------------------------------------------------------------


def test_json_request_places_the_call_with_twilio(twilio_api, app_settings):
    app_settings.setenv("PUBLIC_BASE_URL", "https://calls.example.com")

    response = call({"to": TO})

    assert response.status_code == 201
    assert payload(response) == {
        "sid": twilio_api.created[0]["sid"],
        "status": "queued",
        "to": TO,
        "from": TWILIO_NUMBER,
        "recorded": False,  # no storage configured here: tests/test_records.py has Azurite
    }
    [sent] = twilio_api.requests
    assert sent.method == "POST"
    assert sent.url == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert sent.data["To"] == TO
    assert sent.data["From"] == TWILIO_NUMBER
    assert sent.data["Url"] == "https://calls.example.com/api/voice_url"
    assert sent.data["Method"] == "POST"
    assert sent.auth == (ACCOUNT_SID, AUTH_TOKEN)


def test_a_storage_setting_the_library_cannot_use_still_answers_the_call_it_placed(
        twilio_api, app_settings, caplog):
    """The call is placed before its record is written: a connection string the storage
    library refuses used to end that in a 500 with a traceback, inviting a retry that would
    call twice. It is named, and the call answered as placed, not recorded."""
    app_settings.setenv("AzureWebJobsStorage", "a=b;;c")

    response = call({"to": TO})

    assert response.status_code == 201 and payload(response)["recorded"] is False
    assert len(twilio_api.creates) == 1
    [line] = [r.getMessage() for r in caplog.records if "outcome=not-recorded" in r.getMessage()]
    assert "AzureWebJobsStorage is malformed" in line and "Traceback" not in caplog.text


def test_form_encoded_request_is_accepted(twilio_api):
    response = call({"to": TO}, "application/x-www-form-urlencoded")

    assert response.status_code == 201
    assert twilio_api.requests[0].data["To"] == TO


def test_message_travels_to_voice_url_in_the_query(twilio_api, app_settings):
    app_settings.setenv("PUBLIC_BASE_URL", "https://calls.example.com/")

    assert call({"to": TO, "message": "Your table is ready"}).status_code == 201

    url = urlsplit(twilio_api.requests[0].data["Url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "calls.example.com", "/api/voice_url")
    assert parse_qs(url.query) == {"message": ["Your table is ready"]}


def test_without_public_base_url_the_voice_url_uses_website_hostname_not_the_request(twilio_api):
    call({"to": TO}, url="https://other-host.example.net/api/make_call")

    assert twilio_api.requests[0].data["Url"] == "https://myapp.azurewebsites.net/api/voice_url"


def test_control_characters_are_stripped_from_the_message(twilio_api):
    call({"to": TO, "message": "Hello\x00\x1b[31m\nworld\u200b"})

    url = urlsplit(twilio_api.requests[0].data["Url"])
    assert parse_qs(url.query) == {"message": ["Hello[31m world"]}


def test_api_key_is_used_for_rest_auth_when_set(twilio_api, app_settings):
    app_settings.setenv("TWILIO_API_KEY", API_KEY)
    app_settings.setenv("TWILIO_API_SECRET", API_SECRET)

    assert call({"to": TO}).status_code == 201

    sent = twilio_api.requests[0]
    assert sent.auth == (API_KEY, API_SECRET)
    assert sent.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"


def test_from_may_be_a_listed_caller_id(twilio_api, app_settings):
    app_settings.setenv("CALLER_IDS", "+14155550177, +14155550178")

    assert call({"to": TO, "from": "+14155550178"}).status_code == 201
    assert twilio_api.requests[0].data["From"] == "+14155550178"


def test_a_caller_id_is_not_called_from_itself(twilio_api, app_settings):
    """Nothing refused `to` equal to `from` (an attack run's): a call to itself reaches nobody,
    and a caller ID that is another of the app's Twilio numbers would call the app again."""
    app_settings.setenv("CALLER_IDS", "+14155550177")

    response = call({"to": "+14155550177", "from": "+14155550177"})

    assert response.status_code == 403
    assert "the number the call would come from" in payload(response)["error"]
    assert twilio_api.requests == []
    assert call({"to": "+14155550177"}).status_code == 201  # from TWILIO_PHONE_NUMBER: fine


def test_the_rest_client_is_built_once_and_reused():
    from twilio_double import TwilioApiDouble

    from shared.outbound import twilio_client

    built: list[TwilioApiDouble] = []

    def factory() -> TwilioApiDouble:
        built.append(TwilioApiDouble())
        return built[-1]

    twilio_client.use_http_client(factory)
    try:

        async def three_calls():
            for _ in range(3):
                response = await main(
                    http_request(
                        "POST", URL, {"Content-Type": "application/json"}, f'{{"to":"{TO}"}}'
                    )
                )
                assert response.status_code == 201

        run_app(three_calls())
    finally:
        twilio_client.use_http_client(None)
    assert len(built) == 1
    assert len(built[0].requests) == 3


def test_success_logs_one_line_without_the_full_number(twilio_api, logs):
    call({"to": TO})

    [line] = logs.lines(logging.INFO)
    assert "outcome=created" in line
    assert twilio_api.created[0]["sid"] in line
    assert TO not in logs.text()


# --- bad input: 400, 413, 415, and nothing reaches Twilio -----------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        ('["+14155550123"]', "application/json", 400, "must be an object"),
        ({}, "application/json", 400, "'to' is required"),
        ({"to": 14155550123}, "application/json", 400, "must be a string"),
        ({"to": TO, "To": TO}, "application/json", 400, "Unknown field 'To'"),
        ({"to": "4155550123"}, "application/json", 400, "E.164"),
        ({"to": "+1 415 555 0123"}, "application/json", 400, "E.164"),
        ({"to": "+1415555012"}, "application/json", 400, "E.164"),
        ({"to": TO, "message": "x" * 1001}, "application/json", 400, "1000 characters"),
        (
            "to=%2B14155550123&to=%2B14155550124",
            "application/x-www-form-urlencoded",
            400,
            "more than once",
        ),
        (b"to=%ff", "application/x-www-form-urlencoded", 400, "UTF-8"),
        ({"to": TO}, "text/plain", 415, "application/json"),
        ("x" * (16 * 1024 + 1), "application/json", 413, "16 KB"),
    ],
)
def test_bad_input_is_refused_before_twilio(twilio_api, body, content_type, status, words):
    response = call(body, content_type)

    assert response.status_code == status
    assert words in payload(response)["error"]
    assert twilio_api.requests == []


def test_missing_content_type_is_415(twilio_api):
    req = http_request("POST", URL, {}, json.dumps({"to": TO}))

    response = run_app(main(req))

    assert response.status_code == 415
    assert twilio_api.requests == []


# --- destination policy: 403 -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "words"),
    [
        ("+442079460000", "numbers in GB are not allowed"),  # a London landline, default is US
        ("+19005550100", "premium-rate"),
        ("+15005550006", "personal"),
        # The app's own number: the call comes back to voice_url (its flow may dial again).
        (TWILIO_NUMBER, "one of this app's own numbers"),
    ],
)
def test_destinations_outside_the_policy_are_403(twilio_api, to, words):
    response = call({"to": to})

    assert response.status_code == 403
    assert words in payload(response)["error"]
    assert twilio_api.requests == []


def test_the_apps_other_numbers_are_not_called_either(twilio_api, app_settings):
    """SMS_SENDERS are the app's Twilio numbers too: a call to one comes back to voice_url.
    A typo in that texting setting leaves make_call working (send_sms names it)."""
    app_settings.setenv("SMS_SENDERS", "+14155550177, not a number")

    refused = call({"to": "+14155550177"})

    assert refused.status_code == 403
    assert "one of this app's own numbers" in payload(refused)["error"]
    assert twilio_api.requests == []
    assert call({"to": TO}).status_code == 201


def test_allowed_countries_widen_the_policy(twilio_api, app_settings):
    app_settings.setenv("CALL_ALLOWED_COUNTRIES", "us,GB")

    assert call({"to": "+442079460000"}).status_code == 201


def test_uk_premium_rate_stays_refused_when_uk_is_allowed(twilio_api, app_settings):
    app_settings.setenv("CALL_ALLOWED_COUNTRIES", "US,GB")

    response = call({"to": "+448712345678"})

    assert response.status_code == 403
    assert twilio_api.requests == []


def test_from_must_be_the_twilio_number_or_a_caller_id(twilio_api):
    response = call({"to": TO, "from": "+14155550199"})

    assert response.status_code == 403
    assert "CALLER_IDS" in payload(response)["error"]
    assert twilio_api.requests == []


# --- Twilio's answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (21211, "The 'To' number +14155550123 is not a valid phone number."),
        (
            21219,
            "The number +14155550123 is unverified. Trial accounts may only make calls to verified numbers.",
        ),
        (
            21608,
            "The number +14155550123 is unverified. Trial accounts may only make calls to verified numbers.",
        ),
    ],
)
def test_twilio_refusing_the_call_is_422_with_its_code(twilio_api, code, message):
    twilio_api.error(400, code, message)

    response = call({"to": TO})

    assert response.status_code == 422
    assert payload(response) == {
        "error": message,
        "twilio_code": code,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
    }


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_are_502_and_an_error_log(twilio_api, logs, status):
    twilio_api.error(status, 20003, "Authenticate")

    response = call({"to": TO})

    assert response.status_code == 502
    assert "credentials" in payload(response)["error"]
    assert [line for line in logs.lines(logging.ERROR) if f"status={status}" in line]


def test_rate_limit_is_503_with_retry_after(twilio_api):
    twilio_api.error(429, 20429, "Too Many Requests")

    response = call({"to": TO})

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert payload(response)["twilio_code"] == 20429


def test_twilio_server_error_is_502(twilio_api):
    twilio_api.error(500, 20500, "Internal Server Error")

    response = call({"to": TO})

    assert response.status_code == 502
    assert "Twilio failed" in payload(response)["error"]


def test_connection_failure_is_502(twilio_api):
    twilio_api.fail(aiohttp.ClientConnectionError("connection refused"))

    response = call({"to": TO})

    assert response.status_code == 502
    assert "Could not reach Twilio" in payload(response)["error"]


def test_no_answer_within_the_timeout_is_504_and_never_retried(twilio_api, app_settings):
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.05")
    twilio_api.delay = 1.0

    response = call({"to": TO})

    assert response.status_code == 504
    assert "0.05 seconds" in payload(response)["error"]
    assert len(twilio_api.requests) == 1


# --- settings --------------------------------------------------------------------------------


def test_missing_settings_are_500_naming_each_one(twilio_api, app_settings, logs):
    app_settings.delenv("TWILIO_ACCOUNT_SID")
    app_settings.delenv("TWILIO_PHONE_NUMBER")

    response = call({"to": TO})

    assert response.status_code == 500
    body = payload(response)
    assert "TWILIO_ACCOUNT_SID is not set" in body["error"]
    assert "TWILIO_PHONE_NUMBER is not set" in body["error"]
    assert twilio_api.requests == []
    assert any("TWILIO_ACCOUNT_SID" in line for line in logs.lines(logging.ERROR))


@pytest.mark.parametrize("origin", [
    "http://calls.example.com",  # Twilio would fetch the TwiML in clear (an attack run's)
    "https://calls.example.com#",  # "#/api/voice_url": Twilio would fetch the site's root
    "https://calls.example.com?",
    "https://calls example.com",
    "https://calls.example.com;x",
    "https://calls.example.com:0",
    "https://calls%2Eexample.com",
])
def test_a_public_base_url_twilio_cannot_use_is_named(twilio_api, app_settings, origin):
    app_settings.setenv("PUBLIC_BASE_URL", origin)

    response = call({"to": TO})

    assert response.status_code == 500
    assert payload(response)["settings"] == ["PUBLIC_BASE_URL"]
    assert twilio_api.requests == []


@pytest.mark.parametrize("origin", ["http://localhost:7071", "http://127.0.0.1:7071"])
def test_plain_http_is_a_public_base_url_only_on_this_machine(twilio_api, app_settings, origin):
    app_settings.setenv("PUBLIC_BASE_URL", origin)

    assert call({"to": TO}).status_code == 201
    assert twilio_api.creates[0].data["Url"].startswith(f"{origin}/api/voice_url")


@pytest.mark.parametrize(("name", "value"), [
    ("VOICE_NAME", 'Polly.Joanna"/><Dial>'),
    ("VOICE_LANGUAGE", "english please"),
    ("TWILIO_AUTH_TOKEN", ""),  # REST through an API key still works; voice_url would refuse
])
def test_a_setting_that_stops_voice_url_is_named_before_a_call_is_placed(
    twilio_api, app_settings, name, value
):
    """voice_url answers every call make_call places: with its settings broken the call was
    placed, billed, and failed at its first webhook (an attack run's)."""
    app_settings.setenv("TWILIO_API_KEY", API_KEY)
    app_settings.setenv("TWILIO_API_SECRET", API_SECRET)
    app_settings.setenv(name, value)

    response = call({"to": TO})

    assert response.status_code == 500
    assert payload(response)["settings"] == [name]
    assert twilio_api.requests == []


def test_malformed_settings_are_named_without_their_values(twilio_api, app_settings):
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "soon")
    app_settings.setenv("CALL_ALLOWED_COUNTRIES", "US,Narnia")
    app_settings.setenv("TWILIO_API_KEY", "not-a-key-sid")

    body = payload(call({"to": TO}))

    for name in (
        "TWILIO_HTTP_TIMEOUT",
        "CALL_ALLOWED_COUNTRIES",
        "TWILIO_API_KEY",
        "TWILIO_API_SECRET",
    ):
        assert name in body["error"]
    assert "soon" not in body["error"]
    assert "Narnia" not in body["error"]
    assert "not-a-key-sid" not in body["error"]
