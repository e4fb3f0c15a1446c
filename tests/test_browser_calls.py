"""Calls from and to the browser, server side: the Voice access token (voice_token) and the
TwiML App's voice URL (client_voice), through the worker host, signed as Twilio signs."""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from conftest import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN, TWILIO_NUMBER, signature
from twilio.jwt import Jwt, JwtDecodeError

from devhost.worker_host import HostResponse, WorkerHost

PUBLIC = "https://myapp.azurewebsites.net"
APP_SID = "AP" + "c" * 32
OTHER_APP = "AP" + "d" * 32


@pytest.fixture
def browser_settings(app_settings):
    app_settings.setenv("TWILIO_API_KEY", API_KEY)
    app_settings.setenv("TWILIO_API_SECRET", API_SECRET)
    app_settings.setenv("TWILIO_TWIML_APP_SID", APP_SID)
    return app_settings


def token(host: WorkerHost, headers: dict[str, str] | None = None) -> HostResponse:
    return host.request("GET", "/api/voice_token", headers=headers or {}, base_url=PUBLIC)


# --- the token ------------------------------------------------------------------------------------

def test_the_token_is_signed_with_the_api_key_for_this_apps_twiml_app(worker_host,
                                                                       browser_settings):
    before = int(time.time())
    response = token(worker_host)
    claims = Jwt.from_jwt(response.json()["token"], API_SECRET).payload  # verifies the HMAC

    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    assert claims["iss"] == API_KEY and claims["sub"] == ACCOUNT_SID
    assert claims["grants"]["identity"] == response.json()["identity"] == "console"
    assert claims["grants"]["voice"] == {"outgoing": {"application_sid": APP_SID},
                                         "incoming": {"allow": True}}
    assert before < claims["exp"] <= before + 3600 + 5
    with pytest.raises(JwtDecodeError):  # not signed with the auth token
        Jwt.from_jwt(response.json()["token"], AUTH_TOKEN)


def test_the_identity_is_the_signed_in_user_only_with_app_service_authentication(
    worker_host, browser_settings
):
    named = {"X-MS-CLIENT-PRINCIPAL-NAME": "ana.lima@contoso.com"}

    unproven = token(worker_host, named).json()["identity"]
    browser_settings.setenv("WEBSITE_AUTH_ENABLED", "True")
    signed_in = token(worker_host, named).json()["identity"]
    browser_settings.setenv("CONSOLE_CLIENT_IDENTITY", "front_desk")
    configured = token(worker_host).json()["identity"]

    assert unproven == "console"  # a header a caller wrote names nobody
    assert signed_in == "ana_lima_contoso_com"
    assert configured == "front_desk"


@pytest.mark.parametrize("name", [
    "李小龙", "", "---",
    # What did make an identity, another user's (an attack run's): the letters outside ASCII
    # dropped ("Иван@contoso.com" and "Пётр@contoso.com" were both contoso_com; "josé" was "jos"),
    # a name cut to Twilio's 121 characters, the shared identity, one like a user's own.
    "Иван@contoso.com", "josé@contoso.com", "x" * 200 + "@contoso.com", "console", "Console",
    "user_adda3c8ab839463a",
])
def test_a_signed_in_user_whose_name_makes_no_identity_gets_one_of_their_own(
    worker_host, browser_settings, name
):
    """Never the shared CONSOLE_CLIENT_IDENTITY, which every such user would have rung for and
    answered (found by an attack run)."""
    browser_settings.setenv("WEBSITE_AUTH_ENABLED", "True")

    def signed_in(principal: str) -> str:
        headers = {"X-MS-CLIENT-PRINCIPAL-NAME": name, "X-MS-CLIENT-PRINCIPAL-ID": principal}
        return token(worker_host, headers).json()["identity"]

    first, second = signed_in("11111111-aaaa"), signed_in("22222222-bbbb")

    assert first != second
    assert "console" not in (first, second)
    assert first == signed_in("11111111-aaaa")  # the same user, the same softphone


@pytest.mark.parametrize(("name", "value"), [
    ("TWILIO_API_KEY", None), ("TWILIO_API_SECRET", None), ("TWILIO_TWIML_APP_SID", None),
    ("TWILIO_API_KEY", AUTH_TOKEN), ("TWILIO_TWIML_APP_SID", "PN" + "c" * 32),
    ("CONSOLE_CLIENT_IDENTITY", "front desk"),
])
def test_a_missing_or_malformed_setting_is_named(worker_host, browser_settings, name, value):
    if value is None:
        browser_settings.delenv(name)
    else:
        browser_settings.setenv(name, value)

    response = token(worker_host)

    assert response.status == 500
    assert name in response.json()["settings"] and name in response.json()["error"]
    assert AUTH_TOKEN not in response.body.decode()


def test_the_token_needs_the_functions_key(start_worker_host, browser_settings):
    host = start_worker_host(host_keys=["token-test-key"])

    assert token(host).status == 401
    assert token(host, {"x-functions-key": "token-test-key"}).status == 200


# --- the TwiML App's voice URL ----------------------------------------------------------------

def dial(host: WorkerHost, to: str, application: str = APP_SID, signed: bool = True,
         caller: str = "client:console") -> HostResponse:
    url = f"{PUBLIC}/api/client_voice"
    params = {"CallSid": "CA" + "e" * 32, "AccountSid": ACCOUNT_SID, "ApplicationSid": application,
              "From": caller, "To": to, "Direction": "inbound", "CallStatus": "ringing"}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = signature(url, params)
    return host.request("POST", url, headers=headers, body=urlencode(params), base_url=PUBLIC)


def twiml(response: HostResponse) -> ET.Element:
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/xml")
    return ET.fromstring(response.body)


def shape(root: ET.Element) -> list[tuple[str, dict[str, str], str | None]]:
    """Every element below <Response>, in order: its tag, attributes and text."""
    return [(e.tag, dict(e.attrib), e.text) for e in root.iter() if e is not root]


def test_a_number_within_the_policy_is_dialled_from_the_apps_number(worker_host, browser_settings):
    root = twiml(dial(worker_host, "+14155550123"))

    assert shape(root) == [("Dial", {"callerId": TWILIO_NUMBER}, None),
                           ("Number", {}, "+14155550123")]


def test_another_browser_is_rung_by_its_client_name(worker_host, browser_settings):
    root = twiml(dial(worker_host, "client:front_desk"))

    assert shape(root) == [("Dial", {}, None), ("Client", {}, "front_desk")]


@pytest.mark.parametrize("to", [
    "+447700900123",  # outside the allowed countries (the app's number's: US)
    "+19005550100",  # premium rate
    "+1415555",  # not a number
    "client:front desk",  # not an identity Twilio takes
    "",
])
def test_anything_else_is_refused_aloud_and_never_dialled(worker_host, browser_settings, to):
    root = twiml(dial(worker_host, to))

    assert [e.tag for e in root] == ["Say", "Hangup"]
    assert "cannot be called" in (root[0].text or "")
    assert not list(root.iter("Dial"))


def test_a_refusal_is_logged_without_the_number_however_it_was_written(
        worker_host, browser_settings, caplog):
    """The refusal quotes the number as phonenumbers writes it (a London number's trunk 0
    dropped), not as the softphone sent it: the log line redacts every number in it."""
    caplog.set_level(logging.DEBUG)
    browser_settings.setenv("TWILIO_PHONE_NUMBER", "+442071234567")
    browser_settings.setenv("CALL_ALLOWED_COUNTRIES", "GB,US")

    root = twiml(dial(worker_host, "+4402071234567"))  # the app's own number, with its 0

    assert [e.tag for e in root] == ["Say", "Hangup"]
    [line] = [r.getMessage() for r in caplog.records if "outcome=refused" in r.getMessage()]
    assert "own numbers" in line and "2071234567" not in line


def test_another_twiml_apps_call_is_refused(worker_host, browser_settings):
    root = twiml(dial(worker_host, "+14155550123", application=OTHER_APP))

    assert [e.tag for e in root] == ["Say", "Hangup"] and not list(root.iter("Dial"))


@pytest.mark.parametrize("caller", ["+14155550999", "client:", "client:a b", ""])
def test_a_call_that_is_not_from_a_browser_is_refused(worker_host, browser_settings, caller):
    """A phone number given this TwiML App (Twilio's console offers it by name) sends its
    callers here with To = the number they rang: dialled on, that came back to the app, every
    leg billed (an attack run's). Only a browser's call (From client:NAME) is dialled."""
    root = twiml(dial(worker_host, "+14155550123", caller=caller))

    assert [e.tag for e in root] == ["Say", "Hangup"] and not list(root.iter("Dial"))


def test_without_a_twiml_app_setting_nothing_is_dialled(worker_host, browser_settings):
    browser_settings.delenv("TWILIO_TWIML_APP_SID")

    root = twiml(dial(worker_host, "+14155550123"))

    assert "not set up" in (root[0].text or "") and not list(root.iter("Dial"))


def test_an_unsigned_request_is_refused(worker_host, browser_settings):
    assert dial(worker_host, "+14155550123", signed=False).status == 403
