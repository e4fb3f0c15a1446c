"""Which origin the app trusts, through the real worker: what make_call hands to Twilio never
comes from a request header, and a signature is checked only for this app's origin and for the
route the function serves."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest
from conftest import (
    APP_HOSTNAME,
    AUTH_TOKEN,
    SMS_PARAMS,
    VOICE_PARAMS,
    run_app,
    signed_form_request,
)
from twilio.request_validator import RequestValidator

import voice_url
from devhost.worker_host import HostResponse, WorkerHost

PUBLIC = f"https://{APP_HOSTNAME}"
FORM = "application/x-www-form-urlencoded"
OTHER_APP = "otherapp.example.com"

SPOOFED_HEADERS = {
    "x-forwarded-host": {"X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "https"},
    "x-forwarded-proto": {"X-Forwarded-Proto": "http"},
    "disguised-host": {"Disguised-Host": "attacker.example", "X-Arr-Ssl": "1"},
    "host": {"Host": "attacker.example"},
    "all-at-once": {
        "Host": "attacker.example:8443",
        "X-Forwarded-Host": "attacker.example",
        "Disguised-Host": "attacker.example",
        "X-Forwarded-Proto": "http",
    },
}


def make_call(host: WorkerHost, headers: dict[str, str] | None = None) -> HostResponse:
    return host.request(
        "POST",
        "/api/make_call",
        headers={"Content-Type": "application/json", **(headers or {})},
        body=json.dumps({"to": "+14155550123", "message": "hi"}),
        base_url=PUBLIC,
    )


def signed(
    host: WorkerHost,
    path: str,
    signed_url: str,
    params: dict[str, str] = VOICE_PARAMS,
    *,
    seen_at: str = PUBLIC,
    headers: dict[str, str] | None = None,
) -> HostResponse:
    """A webhook POST to `path`, signed with the app's token for `signed_url`."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(signed_url, params)
    return host.request(
        "POST",
        path,
        headers={"Content-Type": FORM, "X-Twilio-Signature": signature, **(headers or {})},
        body=urlencode(params),
        base_url=seen_at,
    )


# --- 1. the origin sent to Twilio -------------------------------------------------------------


@pytest.mark.parametrize("spoof", list(SPOOFED_HEADERS))
def test_make_call_sends_twilio_to_website_hostname_whatever_the_headers(
    worker_host, twilio_api, spoof
):
    response = make_call(worker_host, SPOOFED_HEADERS[spoof])

    assert response.status == 201, response.body
    [sent] = twilio_api.requests
    assert sent.data["Url"] == f"{PUBLIC}/api/voice_url?message=hi"


@pytest.mark.parametrize("spoof", list(SPOOFED_HEADERS))
def test_public_base_url_wins_over_website_hostname_and_headers(
    worker_host, twilio_api, app_settings, spoof
):
    app_settings.setenv("PUBLIC_BASE_URL", "https://calls.example.org")

    assert make_call(worker_host, SPOOFED_HEADERS[spoof]).status == 201
    assert twilio_api.requests[0].data["Url"].startswith("https://calls.example.org/api/voice_url")


@pytest.mark.parametrize("hostname", [None, "localhost:7071", "127.0.0.1:7071"])
@pytest.mark.parametrize("spoof", ["x-forwarded-host", "host"])
def test_without_a_known_origin_make_call_refuses_to_guess_it(
    worker_host, twilio_api, app_settings, hostname, spoof
):
    """No WEBSITE_HOSTNAME (or func start's loopback one) and no PUBLIC_BASE_URL: a 500 that
    names PUBLIC_BASE_URL, and Twilio hears nothing."""
    if hostname is None:
        app_settings.delenv("WEBSITE_HOSTNAME")
    else:
        app_settings.setenv("WEBSITE_HOSTNAME", hostname)

    response = make_call(worker_host, SPOOFED_HEADERS[spoof])

    assert response.status == 500
    assert "PUBLIC_BASE_URL is not set" in response.json()["error"]
    assert response.json()["settings"] == ["PUBLIC_BASE_URL"]
    assert twilio_api.requests == []


# --- 2. the origin a signature is checked for -------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": OTHER_APP, "X-Forwarded-Proto": "https"},
        {"Disguised-Host": OTHER_APP},
        {"Host": OTHER_APP},
    ],
    ids=["x-forwarded-host", "disguised-host", "host"],
)
def test_on_azure_a_signature_for_another_app_is_refused(worker_host, headers):
    """WEBSITE_HOSTNAME is the trusted origin: naming another app's host in a header does not
    make its signatures valid here."""
    response = signed(
        worker_host, "/api/voice_url", f"https://{OTHER_APP}/api/voice_url", headers=headers
    )

    assert response.status == 403


def test_on_azure_the_apps_own_signature_passes_behind_the_front_end(worker_host):
    response = signed(
        worker_host,
        "/api/voice_url",
        f"{PUBLIC}/api/voice_url",
        seen_at="http://10.0.0.4:8080",
        headers={"X-Forwarded-Host": "internal.example", "X-Forwarded-Proto": "http"},
    )

    assert response.status == 200, response.error


def test_locally_the_last_forwarded_hop_is_trusted_not_the_first(worker_host, app_settings):
    """A proxy appends the host it was asked for: the first hop is whatever the client wrote."""
    app_settings.setenv("WEBSITE_HOSTNAME", "localhost:7071")  # a local run (func start's)
    chain = {"X-Forwarded-Host": f"{OTHER_APP}, tunnel.example.net", "X-Forwarded-Proto": "https"}

    forged = signed(
        worker_host,
        "/api/voice_url",
        f"https://{OTHER_APP}/api/voice_url",
        seen_at="http://127.0.0.1:7071",
        headers=chain,
    )
    genuine = signed(
        worker_host,
        "/api/voice_url",
        "https://tunnel.example.net/api/voice_url",
        seen_at="http://127.0.0.1:7071",
        headers=chain,
    )

    assert forged.status == 403
    assert genuine.status == 200, genuine.error


def test_locally_the_simulator_style_request_to_the_host_itself_passes(worker_host, app_settings):
    app_settings.setenv("WEBSITE_HOSTNAME", "localhost:7071")  # a local run (func start's)

    response = signed(
        worker_host,
        "/api/voice_url",
        "http://127.0.0.1:7071/api/voice_url",
        seen_at="http://127.0.0.1:7071",
    )

    assert response.status == 200, response.error


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:7071", "[::1]", "evil.localhost"])
def test_a_loopback_host_header_alone_is_no_evidence_of_a_local_run(
    worker_host, app_settings, host
):
    """A deployment with neither PUBLIC_BASE_URL nor WEBSITE_HOSTNAME (a container, behind a
    proxy that rewrites Host to localhost): a client that writes a loopback Host and names
    another app in X-Forwarded-Host must not get that app's signature accepted (found by an
    attack run)."""
    app_settings.delenv("WEBSITE_HOSTNAME")

    replayed = signed(
        worker_host,
        "/api/voice_url",
        f"https://{OTHER_APP}/api/voice_url",
        seen_at=f"http://{host}",
        headers={"X-Forwarded-Host": OTHER_APP, "X-Forwarded-Proto": "https"},
    )
    own_host = signed(
        worker_host, "/api/voice_url", f"http://{host}/api/voice_url", seen_at=f"http://{host}"
    )

    assert (replayed.status, own_host.status) == (403, 403)


@pytest.mark.parametrize("website_hostname", [True, False], ids=["azure", "local"])
@pytest.mark.parametrize("tail", ["#", "?"])
def test_a_host_header_naming_another_route_cannot_redirect_the_check(
    worker_host, app_settings, website_hostname, tail
):
    """Host 'myapp/api/sms_url#' made a request to voice_url verify as one to sms_url."""
    if not website_hostname:
        app_settings.delenv("WEBSITE_HOSTNAME")
    host_header = f"{APP_HOSTNAME}/api/sms_url{tail}"

    replayed = signed(
        worker_host,
        "/api/voice_url",
        f"{PUBLIC}/api/sms_url",
        SMS_PARAMS,
        headers={"Host": host_header},
    )
    voice_to_sms = signed(worker_host, "/api/sms_url", f"{PUBLIC}/api/voice_url")

    assert replayed.status == 403
    assert voice_to_sms.status == 403


@pytest.mark.parametrize("host_header", ["twilio_app", "my_app:8080", "app_1.internal:80"])
def test_behind_a_proxy_that_forwards_an_underscored_name_the_signature_still_passes(
    worker_host, app_settings, host_header
):
    """A reverse proxy that forwards its upstream's name (a Compose service) as the Host: the
    trusted origin is the setting's, and such a name parses like any other."""
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)

    response = signed(worker_host, "/api/voice_url", f"{PUBLIC}/api/voice_url",
                      headers={"Host": host_header})

    assert response.status == 200, response.error


@pytest.mark.parametrize("host_header", ["a[", "a]b", "[::1", "host:99999x", "a b", "é.example"])
def test_a_host_that_does_not_parse_is_403_not_500(worker_host, app_settings, caplog, host_header):
    app_settings.delenv("WEBSITE_HOSTNAME")
    caplog.set_level(logging.DEBUG)

    response = signed(
        worker_host,
        "/api/voice_url",
        f"{PUBLIC}/api/voice_url",
        headers={"Host": host_header},
    )

    assert response.status == 403
    assert response.error is None or "Traceback" not in response.error
    assert "Traceback" not in caplog.text


def test_control_characters_from_a_request_are_escaped_in_log_lines(
    worker_host, app_settings, caplog
):
    app_settings.delenv("WEBSITE_HOSTNAME")
    caplog.set_level(logging.DEBUG)
    evil = "x\x1b[2J\x1b[31m.example\r\nFAKE outcome=answered"

    response = signed(
        worker_host,
        "/api/voice_url",
        f"{PUBLIC}/api/voice_url",
        seen_at="http://127.0.0.1:7071",
        headers={"Host": evil},
    )
    # A field name Twilio never sends, reaching make_call's refusal sentence.
    worker_host.request(
        "POST",
        "/api/make_call",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"to\x1b[31m": "x"}),
        base_url=PUBLIC,
    )

    assert response.status == 403
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("shared")]
    assert lines
    for line in lines:
        assert "\x1b" not in line and "\r" not in line and "\n" not in line


def test_the_signature_is_checked_for_the_functions_own_route_only():
    """Belt and braces below the Host check: whatever URL the worker is handed, voice_url checks
    a signature for /api/voice_url only, so a signed sms_url request cannot drive it."""
    req = signed_form_request(f"{PUBLIC}/api/sms_url", SMS_PARAMS)

    assert run_app(voice_url.main(req)).status_code == 403
