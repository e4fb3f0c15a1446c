"""Hostile or careless input to make_call, through the real worker: deep JSON, digits that are
not ASCII, a message too long for Twilio's URL limit, and the '+' a form body loses."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import phonenumbers
import pytest
from conftest import APP_HOSTNAME

PUBLIC = f"https://{APP_HOSTNAME}"


def make_call(host, body: bytes | str | dict, content_type: str = "application/json"):
    if isinstance(body, dict):
        body = json.dumps(body)
    return host.request(
        "POST",
        "/api/make_call",
        headers={"Content-Type": content_type},
        body=body,
        base_url=PUBLIC,
    )


@pytest.mark.parametrize("body", ["[" * 15000, '{"a":' * 3000, "[" * 100_000])
def test_deeply_nested_json_is_a_400_not_a_crash(worker_host, twilio_api, body):
    response = make_call(worker_host, body[: 16 * 1024])

    assert response.status == 400
    assert response.json() == {"error": "The request body is not valid JSON."}
    assert twilio_api.requests == []


@pytest.mark.parametrize(
    "to",
    ["+1\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0669\u0669", "+1\u096a\u0967\u096b5550199", "+\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff19\uff19", "+1415555\u0660199"],
    ids=["arabic-indic", "devanagari", "fullwidth", "one-arabic-digit"],
)
def test_only_ascii_digits_make_an_e164_number(worker_host, twilio_api, to):
    response = make_call(worker_host, {"to": to})

    assert response.status == 400
    assert "E.164" in response.json()["error"]
    assert twilio_api.requests == []


@pytest.mark.parametrize("field", ["to", "from"])
def test_only_ascii_digits_in_phone_settings(worker_host, twilio_api, app_settings, field):
    setting = "TWILIO_PHONE_NUMBER" if field == "from" else "CALLER_IDS"
    app_settings.setenv(setting, "+1\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0660\u0660")

    response = make_call(worker_host, {"to": "+14155550123"})

    assert response.status == 500
    assert setting in response.json()["settings"]


def test_a_message_that_would_overflow_twilios_url_limit_is_refused(worker_host, twilio_api):
    """1,000 emoji are within the 1,000-character limit but 12,000 characters once encoded."""
    response = make_call(worker_host, {"to": "+14155550123", "message": "🎉" * 1000})

    assert response.status == 400
    error = response.json()["error"]
    assert "4,000 characters" in error and "Shorten the message" in error
    assert twilio_api.requests == []


def test_the_longest_message_that_fits_is_placed_within_the_limit(worker_host, twilio_api):
    response = make_call(worker_host, {"to": "+14155550123", "message": "é" * 600})

    assert response.status == 201
    assert len(twilio_api.requests[0].data["Url"]) <= 4000


def test_a_plus_lost_in_form_encoding_is_explained(worker_host, twilio_api):
    """curl -d 'to=+14155550199' sends the '+' unencoded, which form decoding reads as a space."""
    response = make_call(
        worker_host, "to=+14155550199", content_type="application/x-www-form-urlencoded"
    )

    assert response.status == 400
    assert "%2B" in response.json()["error"]
    assert twilio_api.requests == []


def test_an_encoded_plus_in_form_data_is_accepted(worker_host, twilio_api):
    response = make_call(
        worker_host, "to=%2B14155550199", content_type="application/x-www-form-urlencoded"
    )

    assert response.status == 201
    assert twilio_api.requests[0].data["To"] == "+14155550199"


def test_the_phonenumbers_module_the_app_imports_carries_no_geocoder_data():
    """phonenumberslite: the same metadata for number types and regions, without the 40 MB of
    geocoding, carrier and time-zone data that a cold start would otherwise pull."""
    for data in ("phonenumbers.geodata", "phonenumbers.carrierdata", "phonenumbers.tzdata"):
        assert importlib.util.find_spec(data) is None, f"{data} is installed"
    package = Path(phonenumbers.__file__).parent
    size = sum(f.stat().st_size for f in package.rglob("*") if f.is_file())
    assert size < 15 * 1024 * 1024, f"phonenumbers takes {size / 1e6:.0f} MB"
    assert phonenumbers.region_code_for_number(phonenumbers.parse("+442079460000")) == "GB"
