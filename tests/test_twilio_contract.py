"""Every request make_call and send_sms send to Twilio, checked against Twilio's own OpenAPI
description.

The double answers with the spec's own 201 example, which must parse into the library's call
object and come back to the caller; so the double cannot drift from what Twilio really does.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from conftest import API_KEY, API_SECRET, http_request, run_app
from twilio_double import RecordedRequest

import send_sms
from make_call import main

CALLS_PATH = "/2010-04-01/Accounts/{AccountSid}/Calls.json"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
E164 = re.compile(r"\+[1-9]\d{1,14}")


def _endpoint(value: str) -> bool:
    """The spec's `endpoint` format: a phone number, or a client:/sip: address."""
    return bool(E164.fullmatch(value)) or value.startswith(("client:", "sip:"))


@pytest.fixture(scope="session")
def twilio_spec(shared_dir: Path) -> dict:
    return json.loads((shared_dir / "twilio-oai" / "twilio_api_v2010.json").read_text())


@pytest.fixture(scope="session")
def openapi(twilio_spec: dict):
    from openapi_core import Config, OpenAPI

    config = Config(
        spec_validator_cls=None,  # the spec is Twilio's; its meta-validation costs 4 s
        extra_format_validators={
            "endpoint": _endpoint,
            "phone-number": lambda value: bool(E164.fullmatch(value)),
        },
    )
    return OpenAPI.from_dict(twilio_spec, config=config)


def _example(twilio_spec: dict, path: str, name: str) -> dict:
    operation = twilio_spec["paths"][path]["post"]
    examples = operation["responses"]["201"]["content"]["application/json"]["examples"]
    return copy.deepcopy(examples[name]["value"])


@pytest.fixture
def spec_example(twilio_spec: dict) -> dict:
    return _example(twilio_spec, CALLS_PATH, "create")


class _OpenAPIRequest:
    """A recorded request in the shape openapi-core validates (its `Request` protocol)."""

    def __init__(self, recorded: RecordedRequest) -> None:
        from openapi_core.datatypes import RequestParameters

        url = urlsplit(recorded.url)
        self.host_url = f"{url.scheme}://{url.netloc}"
        self.path = url.path
        self.method = recorded.method.lower()
        self.body = urlencode(recorded.data, doseq=True).encode()
        self.content_type = "application/x-www-form-urlencoded"
        headers = dict(recorded.headers)
        if recorded.auth:
            user, password = recorded.auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        self.parameters = RequestParameters(query=recorded.params, header=headers, cookie={})


@pytest.mark.parametrize(
    ("body", "env"),
    [
        ({"to": "+14155550123"}, {}),
        ({"to": "+14155550123", "message": "Tu mesa está lista 🍽"}, {}),
        ({"to": "+14155550123", "from": "+14155550177"}, {"CALLER_IDS": "+14155550177"}),
        ({"to": "+14155550123"}, {"TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET}),
        ({"to": "+442079460000"}, {"CALL_ALLOWED_COUNTRIES": "US,GB"}),
    ],
    ids=["plain", "message", "caller-id", "api-key", "international"],
)
def test_make_call_requests_match_twilios_spec(
    openapi, spec_example, twilio_api, app_settings, body, env
):
    for name, value in env.items():
        app_settings.setenv(name, value)
    twilio_api.created_call_json = lambda _req: spec_example

    req = http_request(
        "POST",
        "https://myapp.azurewebsites.net/api/make_call",
        {"Content-Type": "application/json"},
        json.dumps(body),
    )
    response = run_app(main(req))

    [sent] = twilio_api.requests
    openapi.validate_request(_OpenAPIRequest(sent))  # raises with the spec's complaint
    assert response.status_code == 201
    assert json.loads(response.get_body()) == {
        "recorded": False,  # no storage configured here
        "sid": spec_example["sid"],
        "status": spec_example["status"],
        "to": spec_example["to"],
        "from": spec_example["from"],
    }


def test_the_contract_check_catches_a_request_twilio_would_refuse(openapi, spec_example):
    """The check itself can fail: a request without To is not what the spec describes."""
    from openapi_core.exceptions import OpenAPIError

    bad = RecordedRequest(
        method="POST",
        url="https://api.twilio.com/2010-04-01/Accounts/"
        + spec_example["account_sid"]
        + "/Calls.json",
        params={},
        data={"From": "+14155550100", "Url": "https://example.com/api/voice_url"},
        headers={},
        auth=("user", "password"),
    )
    with pytest.raises(OpenAPIError):
        openapi.validate_request(_OpenAPIRequest(bad))


@pytest.mark.parametrize(
    ("body", "env", "example"),
    [
        ({"to": "+14155550123", "body": "Your table is ready"}, {}, "create"),
        ({"to": "+14155550123", "body": "¡Mesa lista! 🍽\nGracias"}, {}, "create"),
        (
            {"to": "+14155550123", "media_url": ["https://e.com/a.jpg", "https://e.com/b.png"]},
            {},
            "create",
        ),
        (
            {"to": "+14155550123", "body": "hi", "from": "+14155550177"},
            {"SMS_SENDERS": "+14155550177"},
            "create",
        ),
        (
            {"to": "+14155550123", "body": "hi"},
            {"TWILIO_MESSAGING_SERVICE_SID": "MG" + "f" * 32},
            "createWithMessagingService",
        ),
        (
            {"to": "+14155550123", "body": "hi"},
            {"TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET},
            "create",
        ),
    ],
    ids=["plain", "unicode", "mms", "sender", "messaging-service", "api-key"],
)
def test_send_sms_requests_match_twilios_spec(
    openapi, twilio_spec, twilio_api, app_settings, texting_storage, body, env, example
):
    for name, value in env.items():
        app_settings.setenv(name, value)
    created = _example(twilio_spec, MESSAGES_PATH, example)
    twilio_api.created_message_json = lambda _req: created

    req = http_request(
        "POST",
        "https://myapp.azurewebsites.net/api/send_sms",
        {"Content-Type": "application/json"},
        json.dumps(body),
    )
    response = run_app(send_sms.main(req))

    [sent] = twilio_api.requests
    assert sent.path.endswith("/Messages.json")
    openapi.validate_request(_OpenAPIRequest(sent))  # raises with the spec's complaint
    assert response.status_code == 201
    assert json.loads(response.get_body()) == {
        "recorded": True,
        "sid": created["sid"],
        "status": created["status"],
        "to": created["to"],
        "from": created["from"],
        "messaging_service_sid": created["messaging_service_sid"],
        "num_segments": int(created["num_segments"]),
    }
