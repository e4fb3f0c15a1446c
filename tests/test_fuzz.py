"""Property-based requests through the real worker: whatever arrives, the functions answer with a
deliberate 4xx (or a 2xx for what happens to be valid), never a 5xx or a traceback, and Twilio
hears nothing of invalid input."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import TWILIO_NUMBER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devhost.worker_host import WorkerHost

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["/api/make_call", "/api/send_sms", "/api/voice_url", "/api/sms_url"]
REST = ("make_call", "send_sms")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=os.environ.get("CI") == "true",
)


@contextmanager
def trust_mode(on_azure: bool) -> Iterator[None]:
    """On Azure: WEBSITE_HOSTNAME as app_settings sets it. Locally: none. Set per example (a
    monkeypatch would outlive the example: hypothesis reuses function-scoped fixtures)."""
    hostname = os.environ.pop("WEBSITE_HOSTNAME", None)
    try:
        if on_azure and hostname:
            os.environ["WEBSITE_HOSTNAME"] = hostname
        yield
    finally:
        os.environ.pop("WEBSITE_HOSTNAME", None)
        if hostname:
            os.environ["WEBSITE_HOSTNAME"] = hostname


@pytest.fixture
def host(worker_host: WorkerHost) -> WorkerHost:
    """The repo's app, loaded once per session through the real worker."""
    return worker_host


methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data; boundary=x",
            "",
        ]
    ),
    st.text(max_size=40),
)
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200
)  # what an HTTP header can carry
# Hosts as an attacker writes them: another route after a slash, a fragment or query marker,
# brackets that break URL parsing, user info, ports out of range, lists.
hostile_hosts = st.one_of(
    header_text,
    st.builds(
        lambda a, sep, b: f"{a}{sep}{b}",
        st.sampled_from(["myapp.azurewebsites.net", "a", "[::1", "attacker.example", ""]),
        st.sampled_from(["/api/sms_url#", "/api/voice_url?", "#", "?", "[", "]", "@", ":", ", "]),
        st.sampled_from(["", "x", "99999", "attacker.example", "api/make_call"]),
    ),
)
headers = st.dictionaries(
    st.sampled_from(
        [
            "Host",
            "X-Twilio-Signature",
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
            "Disguised-Host",
            "X-Arr-Ssl",
            "Accept",
            "I-Twilio-Idempotency-Token",
        ]
    ),
    hostile_hosts,
    max_size=5,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
call_fields = st.fixed_dictionaries(
    {},
    optional={
        "to": st.one_of(st.text(max_size=20), st.just(TWILIO_NUMBER), json_values),
        "from": st.one_of(st.text(max_size=20), json_values),
        "message": st.one_of(st.text(max_size=1100), json_values),
        "body": st.one_of(st.text(max_size=1700), json_values),
        "media_url": st.one_of(
            st.lists(st.sampled_from(["https://e.com/a.jpg", "http://x", "", "https://"])),
            json_values,
        ),
    },
)
bodies = st.one_of(
    st.binary(max_size=512),  # includes invalid UTF-8
    st.builds(lambda d: json.dumps(d).encode(), call_fields),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(
        lambda k, v: f"{k}={v}".encode("utf-8", "surrogatepass"),
        st.sampled_from(["to", "Body", "CallSid", "From"]),
        st.text(max_size=100),
    ),
    st.builds(
        lambda n, c: c * n, st.integers(16_000, 300_000), st.sampled_from([b"a", b"\xff", b"="])
    ),
    # Nesting deeper than json's recursion limit, within the body size limit and past it.
    st.builds(
        lambda n, c: c * n, st.integers(900, 20_000), st.sampled_from([b"[", b'{"a":', b'{"to":['])
    ),
)
queries = st.one_of(
    st.just(""),
    st.builds(
        lambda q: "?" + q,
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),
    ),
    st.just("?bodySHA256=00"),
    st.just("?message=%ff%fe"),
)


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    method=methods,
    query=queries,
    content_type=content_types,
    extra=headers,
    body=bodies,
    on_azure=st.booleans(),
)
def test_any_request_gets_a_deliberate_answer(
    host, twilio_api, path, method, query, content_type, extra, body, on_azure
):
    twilio_api.requests.clear()
    request_headers = dict(extra)
    if content_type:
        request_headers["Content-Type"] = content_type

    with trust_mode(on_azure):
        response = host.request(method, path + query, headers=request_headers, body=body)

    if response.function in REST and not on_azure and response.status == 500:
        # A local run with no PUBLIC_BASE_URL: make_call refuses to guess its origin, on purpose.
        assert response.json()["settings"] == ["PUBLIC_BASE_URL"]
        return
    assert response.status < 500, (response.status, response.error)
    assert b"Traceback" not in response.body
    if response.status != 201:
        assert twilio_api.requests == [], "Twilio was asked to act on a refused request"
    if response.function in REST and response.status >= 400:
        assert isinstance(response.json()["error"], str)


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    depth=st.integers(500, 5_000),
    opener=st.sampled_from(["[", '{"a":', '{"to":[', '{"message":{"x":']),
    host_header=hostile_hosts,
    forwarded=st.dictionaries(
        st.sampled_from(["X-Forwarded-Host", "Disguised-Host", "X-Forwarded-Proto"]),
        hostile_hosts,
        max_size=3,
    ),
    on_azure=st.booleans(),
)
def test_deep_nesting_and_hostile_hosts_never_reach_a_5xx(
    host, twilio_api, path, depth, opener, host_header, forwarded, on_azure
):
    """The two inputs an attack run broke the app with, fuzzed on their own so that every
    example carries them: JSON nested past the parser's stack, and Host/forwarding headers."""
    twilio_api.requests.clear()
    headers = {"Content-Type": "application/json", "Host": host_header, **forwarded}

    with trust_mode(on_azure):
        response = host.request("POST", path, headers=headers, body=(opener * depth).encode())

    if response.function in REST and not on_azure and response.status == 500:
        assert response.json()["settings"] == ["PUBLIC_BASE_URL"]
    else:
        assert response.status < 500, (response.status, response.error)
    assert b"Traceback" not in response.body
    assert twilio_api.requests == []
