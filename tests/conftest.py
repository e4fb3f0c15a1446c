"""Fixtures shared by the tests: app settings, the Twilio API double, requests as the host builds
them, and signatures computed with the twilio library."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import azure.functions as func
import pytest
from twilio.request_validator import RequestValidator
from twilio_double import TwilioApiDouble

from shared.app_settings import ALL_SETTINGS, STORAGE_SETTINGS
from shared.common.settings import PLATFORM_SETTINGS
from shared.outbound import twilio_client

pytest_plugins = ["devhost.pytest_plugin"]

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "primary-auth-token-for-tests-0001"
SECONDARY_TOKEN = "secondary-auth-token-for-tests-02"
API_KEY = "SK" + "b" * 32
API_SECRET = "api-secret-for-tests-00000000003"
OTHER_TOKEN = "someone-elses-auth-token-0000004"
# The app's number: not one the example flows ring or text (+14155550100, +14155550101).
TWILIO_NUMBER = "+14155550160"
# Secrets of Twilio SharedKeys, which a Webhook Rule signs webhooks with instead of the token.
SHARED_KEY_SECRET = "shared-key-secret-for-tests-00005"
SHARED_KEY_SECRET_SECONDARY = "shared-key-secret-for-tests-00006"
SECRETS = (AUTH_TOKEN, SECONDARY_TOKEN, API_SECRET, SHARED_KEY_SECRET, SHARED_KEY_SECRET_SECONDARY)
# What App Service sets WEBSITE_HOSTNAME to: the app's default host name.
APP_HOSTNAME = "myapp.azurewebsites.net"


@pytest.fixture(autouse=True)
def app_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A complete, valid configuration, as on Azure; tests change or delete single settings."""
    for name in (*ALL_SETTINGS, *PLATFORM_SETTINGS, *STORAGE_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WEBSITE_HOSTNAME", APP_HOSTNAME)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("TWILIO_PHONE_NUMBER", TWILIO_NUMBER)
    return monkeypatch


@pytest.fixture
def twilio_api() -> Iterator[TwilioApiDouble]:
    """Twilio's REST API, replaced at the HTTP layer for every client make_call builds."""
    double = TwilioApiDouble()
    twilio_client.use_http_client(lambda: double)
    yield double
    twilio_client.use_http_client(None)


def http_request(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes | str = b"",
) -> func.HttpRequest:
    """An HttpRequest as the Functions host hands it over: full URL, lower-cased headers,
    query parameters, raw body bytes."""
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    return func.HttpRequest(
        method=method.upper(),
        url=url,
        headers={k.lower(): v for k, v in (headers or {}).items()},
        params=query,
        route_params={},
        body=body.encode() if isinstance(body, str) else body,
    )


T = TypeVar("T")


def run_app(work: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(work) for the app's code called directly. Its cached Twilio and storage
    clients hold aiohttp sessions bound to this run's loop: they are closed on it before it
    ends, not left to be reported as unclosed (the worker's loop lasts as long as its process;
    each asyncio.run's does not)."""
    from devhost.worker_host import close_app_clients

    async def and_close() -> T:
        try:
            return await work
        finally:
            await close_app_clients()

    return asyncio.run(and_close())


def signature(url: str, params: dict[str, str] | None = None, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params or {})


def signed_form_request(
    url: str,
    params: dict[str, str],
    token: str = AUTH_TOKEN,
    signed_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpRequest:
    """A POST webhook as Twilio sends it, signed over `signed_url` (default: `url`)."""
    return http_request(
        "POST",
        url,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature(signed_url or url, params, token),
            **(headers or {}),
        },
        urlencode(params),
    )


VOICE_PARAMS = {
    "CallSid": "CA" + "1" * 32,
    "AccountSid": ACCOUNT_SID,
    "From": "+14155550111",
    "To": TWILIO_NUMBER,
    "CallStatus": "in-progress",
    "ApiVersion": "2010-04-01",
    "Direction": "outbound-api",
}
SMS_PARAMS = {
    "MessageSid": "SM" + "2" * 32,
    "AccountSid": ACCOUNT_SID,
    "From": "+14155550111",
    "To": TWILIO_NUMBER,
    "Body": "Hello there",
    "NumMedia": "0",
    "FromCountry": "US",  # Twilio's lookup of both numbers (the reply policy reads it)
    "ToCountry": "US",
}


class LogCapture:
    """The records logged while a test ran, with a check that no secret is among them."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    @property
    def records(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if r.name.startswith("shared")]

    def lines(self, level: int | None = None) -> list[str]:
        return [r.getMessage() for r in self.records if level is None or r.levelno == level]

    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.caplog.records)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> LogCapture:
    caplog.set_level(logging.DEBUG)
    return LogCapture(caplog)


REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def refusing_local_host(reason: str) -> Iterator[str]:
    """A stand-in of the local host refusing every POST itself, as devhost.server does (400,
    empty, its reason in X-Devhost-Reason), on a free loopback port: its base URL. For the
    clients that must pass the reason on (the simulator, the Twilio stand-in's callbacks)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(400)
            self.send_header("X-Devhost-Reason", reason)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def server_command(
    *args: str, no_settings: bool = True, timeout: float = 30.0
) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """`python -m devhost.server ARGS` on a free port, from the repository: (start-up output up
    to `Listening on`, base URL, the process). Killed if it has not started within `timeout`
    (a server that never starts fails the test, not hangs it); stopped after, unless the test
    stopped it itself."""
    command = [sys.executable, "-m", "devhost.server", "--port", "0", *args]
    if no_settings:
        command.append("--no-settings")
    process = subprocess.Popen(
        command, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Listening on "):
                break
        assert lines and lines[-1].startswith("Listening on "), "".join(lines)
        watchdog.cancel()
        yield "".join(lines), lines[-1].split()[2].rstrip("."), process
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def leases(azurite_storage):
    """Azurite with no broadcast pace lease (shared.broadcasts.pace) left by an earlier test:
    an instance that still counted would take this test's share of the pace. This process's
    own shares start afresh too."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables import TableServiceClient

    from shared.broadcasts import pace
    from shared.records import storage

    with (TableServiceClient.from_connection_string(azurite_storage.connection_string) as service,
          contextlib.suppress(ResourceNotFoundError)):
        service.delete_table(pace.TABLE)
    storage.forget_table(pace.TABLE)
    pace._shares.clear()
    yield azurite_storage
    with (TableServiceClient.from_connection_string(azurite_storage.connection_string) as service,
          contextlib.suppress(ResourceNotFoundError)):
        service.delete_table(pace.TABLE)
    storage.forget_table(pace.TABLE)
    pace._shares.clear()


@pytest.fixture
def texting_storage(app_settings, azurite_storage):
    """Azurite, with no opt-out left by an earlier test: every text is checked against the
    opt-outs first (shared.records.optouts), and a test's STOP must not refuse the next test's
    text."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables import TableServiceClient

    from shared.records import optouts

    connection = azurite_storage.connection_string
    with (TableServiceClient.from_connection_string(connection) as service,
          contextlib.suppress(ResourceNotFoundError)):
        service.delete_table(optouts.TABLE)
    return azurite_storage
