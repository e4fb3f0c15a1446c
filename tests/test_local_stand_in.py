"""The local run without Twilio, over real HTTP, as docs/local.md ("Try it without Twilio") has a
user do it: Azurite, the stand-in of Twilio's API (`python -m devhost.standin`) and the local
host aimed at it (`python -m devhost.server --twilio-api`), each in its own process. make_call
and send_sms create through the stand-in, Twilio's status callbacks are simulated (signed as
Twilio signs them, out of order) and the records read back end in their final status.

Nothing leaves 127.0.0.1, and every process started here is stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import ACCOUNT_SID, AUTH_TOKEN, TWILIO_NUMBER, refusing_local_host
from console_stack import keyed_request

from devhost import server, simulate
from devhost.pytest_plugin import APP_ROOT
from devhost.standin import aimed_at, answer, loopback_api_url
from shared.app_settings import ALL_SETTINGS, STORAGE_SETTINGS
from shared.common.settings import PLATFORM_SETTINGS

PUBLIC = "https://example.ngrok-free.app"
KEY = "local-stand-in-test-key"
TO = "+14155550123"
START_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0


class Child:
    """`python -m <module> <args>` from the app root, stdout and stderr as one stream of lines,
    read by a thread so that every wait has a timeout."""

    def __init__(self, module: str, args: list[str], env: dict[str, str]) -> None:
        self.module = module
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=APP_ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        )
        threading.Thread(target=self._pump, name=f"{module}-output", daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first line (from now on) that `pattern` matches; fails with the output so far."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{self.module}: no line matching {pattern!r} within {timeout:g} s:"
                            f"\n{self.output()}")
            if line is None:
                pytest.fail(f"{self.module} exited ({self.proc.wait()}):\n{self.output()}")
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def drain(self, settle: float = 0.2) -> list[str]:
        """Every line so far (those printed within `settle` s included)."""
        with contextlib.suppress(queue.Empty):
            while (line := self._queue.get(timeout=settle)) is not None:
                self.lines.append(line)
        return self.lines

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        """SIGTERM (both stop on it as on Ctrl+C), then SIGKILL if it will not end."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in reversed(started):
        child.stop()


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy in the environment must not see this test's requests (urllib honours it)."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def app_env(storage: str) -> dict[str, str]:
    """The environment of a local run: no developer's setting, fake Twilio credentials (nothing
    reaches Twilio), the tunnel's URL as PUBLIC_BASE_URL, and no WEBSITE_HOSTNAME."""
    dropped = {*ALL_SETTINGS, *PLATFORM_SETTINGS, *STORAGE_SETTINGS}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    return env | {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": TWILIO_NUMBER,
        "PUBLIC_BASE_URL": PUBLIC,
        "AzureWebJobsStorage": storage,
        "PYTHONUNBUFFERED": "1",
    }


def call(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """A request to the local host with the function key; (status, JSON body or {})."""
    return keyed_request(int(base.rsplit(":", 1)[1]), KEY, method, path, body)


def status_callback(base: str, kind: str, sid: str, status: str) -> int:
    """A status callback as Twilio sends it: to the local host, signed for the public URL that
    make_call gave Twilio (PUBLIC_BASE_URL + /api/call_status)."""
    path = "/api/" + simulate.KINDS[kind]
    hook = simulate.build(kind, base + path, AUTH_TOKEN, sign_url=PUBLIC + path,
                          account_sid=ACCOUNT_SID, from_=TWILIO_NUMBER, to=TO, sid=sid,
                          status=status)
    return simulate.send(hook, timeout=HTTP_TIMEOUT).status


def test_make_call_and_send_sms_through_the_stand_in_end_in_their_final_status(
    azurite, children, loopback_only
):
    began = time.monotonic()
    env = app_env(azurite.start().connection_string)
    standin = Child("devhost.standin", ["--port", "0"], env)
    children.append(standin)
    api = standin.wait_for(r"listening on (http://127\.0\.0\.1:\d+) ")[1]

    host = Child("devhost.server", ["--no-settings", "--port", "0", "--host-key", KEY,
                                    "--twilio-api", api], env)
    children.append(host)
    notice = host.wait_for(r"^Twilio API: ").string
    base = host.wait_for(r"^Listening on (http://127\.0\.0\.1:\d+)\. ")[1]
    assert notice == server.stand_in_notice(api)
    # The command it suggests runs on the host's own interpreter, which has the app's packages
    # (a bare `python` may not: found by a newcomer run).
    named = notice.split("Simulate them: ")[1].split(" -m ")[0]
    assert (APP_ROOT / named).resolve() == Path(sys.executable).resolve()  # its folder's
    assert f"go to the stand-in at {api}, NOT to Twilio" in notice

    # A call: created by the stand-in, then completed before it rang (Twilio does not promise
    # the order), and the ringing delivered twice.
    status, placed = call(base, "POST", "/api/make_call", {"to": TO, "message": "Table ready"})
    assert status == 201, placed
    assert placed["recorded"] is True
    assert (placed["status"], placed["to"], placed["from"]) == ("queued", TO, TWILIO_NUMBER)
    sid = placed["sid"]
    assert re.fullmatch(r"CA[0-9a-f]{32}", sid)
    answers = [status_callback(base, "call-status", sid, s)
               for s in ("completed", "ringing", "initiated", "ringing")]
    assert answers == [204] * 4
    status, record = call(base, "GET", f"/api/calls/{sid}")
    assert status == 200, record
    assert record["status"] == "completed"
    assert (record["kind"], record["to"], record["from"]) == ("call", TO, TWILIO_NUMBER)
    assert record["text"] == "Table ready"
    assert [e["status"] for e in record["events"]] == ["initiated", "ringing", "completed"]

    # A text: delivered reported before sent.
    status, sent = call(base, "POST", "/api/send_sms", {"to": TO, "body": "Your table is ready"})
    assert status == 201, sent
    assert sent["recorded"] is True
    assert (sent["status"], sent["num_segments"], sent["from"]) == ("queued", 1, TWILIO_NUMBER)
    message_sid = sent["sid"]
    assert re.fullmatch(r"SM[0-9a-f]{32}", message_sid)
    assert [status_callback(base, "message-status", message_sid, s)
            for s in ("delivered", "sent")] == [204, 204]
    status, record = call(base, "GET", f"/api/messages/{message_sid}")
    assert status == 200, record
    assert record["status"] == "delivered"
    assert record["text"] == "Your table is ready"

    # Both creations reached the stand-in (it logs each request), nothing else did.
    logged = [line for line in standin.drain() if line.startswith(("POST ", "GET "))]
    assert logged == [
        f"POST /2010-04-01/Accounts/AC{ACCOUNT_SID[2:4]}…{ACCOUNT_SID[-2:]}/Calls.json -> 201 "
        f"{sid}",
        f"POST /2010-04-01/Accounts/AC{ACCOUNT_SID[2:4]}…{ACCOUNT_SID[-2:]}/Messages.json -> "
        f"201 {message_sid}",
    ]
    assert AUTH_TOKEN not in standin.output() and AUTH_TOKEN not in host.drain(0.05)

    # A recording's audio (the console's voicemail player) is logged as every request is.
    recording = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE{'c' * 32}.mp3"
    fetch = http.client.HTTPConnection(api.removeprefix("http://"), timeout=HTTP_TIMEOUT)
    fetch.request("GET", recording)
    assert fetch.getresponse().status == 200
    fetch.close()
    shown = recording.replace(ACCOUNT_SID, f"AC{ACCOUNT_SID[2:4]}…{ACCOUNT_SID[-2:]}")
    assert standin.wait_for(r"^GET .*Recordings.*").string == f"GET {shown} -> 200 recording"

    assert host.stop() == 0 and standin.stop() == 0
    assert "Stopping." in host.drain(0.05)
    assert standin.drain(0.05)[-1] == "Stopping."
    assert "Traceback" not in standin.output()
    assert time.monotonic() - began < 20  # about 3 s here; Azurite's start is the session's


# ---- the parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:7080", "http://127.0.0.1:7080"),
        ("http://127.0.0.1:7080/", "http://127.0.0.1:7080"),
        ("http://localhost:7080/twilio/", "http://localhost:7080/twilio"),
        ("http://127.1.2.3:9", "http://127.1.2.3:9"),
        ("http://[::1]:7080", "http://[::1]:7080"),
        ("https://localhost", "https://localhost"),
    ],
)
def test_a_loopback_stand_in_url_is_taken(url, expected):
    assert loopback_api_url(url) == expected


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://example.com:7080", "not a loopback address"),
        ("https://api.twilio.com", "not a loopback address"),
        ("http://10.0.0.5:7080", "not a loopback address"),
        ("http://0.0.0.0:7080", "not a loopback address"),
        ("http://127.0.0.1.example.com", "not a loopback address"),
        ("http://user:pass@127.0.0.1:7080", "user name or password"),
        ("http://127.0.0.1:7080?x=1", "query or fragment"),
        ("ftp://127.0.0.1", "not an http:// URL"),
        ("127.0.0.1:7080", "not an http:// URL"),
        ("http://127.0.0.1:99999", "not a URL"),
    ],
)
def test_any_other_stand_in_url_is_refused(url, words):
    with pytest.raises(ValueError, match=words):
        loopback_api_url(url)


def test_the_host_refuses_a_remote_twilio_api_before_loading_anything(capsys):
    with pytest.raises(SystemExit) as exit_:
        server.main(["--no-settings", "--twilio-api", "http://example.com"])
    assert exit_.value.code == 2
    assert "--twilio-api: 'example.com' is not a loopback address" in capsys.readouterr().err


def test_every_twilio_host_is_re_aimed_at_the_stand_in():
    path = "/2010-04-01/Accounts/AC1/Calls.json"
    assert aimed_at(f"https://api.twilio.com{path}", "http://127.0.0.1:7080") == \
        f"http://127.0.0.1:7080{path}"
    assert aimed_at(f"https://api.dublin.ie1.twilio.com{path}?a=1", "http://[::1]:1/x") == \
        f"http://[::1]:1/x{path}?a=1"


def test_the_stand_in_reads_repeated_fields_and_answers_as_twilio():
    account = "AC" + "e" * 32
    calls = f"/2010-04-01/Accounts/{account}/Calls.json"
    messages = f"/2010-04-01/Accounts/{account}/Messages.json"
    events = b"&".join(b"StatusCallbackEvent=" + e for e in (b"initiated", b"completed"))
    status, _, created = answer(
        "POST", calls, b"To=%2B14155550123&From=%2B14155550100&Url=https%3A%2F%2Fx%2Fv&" + events)
    assert status == 201 and created["status"] == "queued" and created["to"] == TO

    status, _, message = answer(
        "POST", messages,
        b"To=%2B14155550123&From=%2B14155550100&Body=hi&MediaUrl=https%3A%2F%2Fx%2F1"
        b"&MediaUrl=https%3A%2F%2Fx%2F2&StatusCallback=https%3A%2F%2Fx%2Fs")
    assert status == 201
    assert re.fullmatch(r"SM[0-9a-f]{32}", message["sid"])
    assert {k: message[k] for k in ("status", "to", "from", "messaging_service_sid",
                                    "num_segments", "num_media", "body")} == {
        "status": "queued", "to": TO, "from": "+14155550100", "messaging_service_sid": None,
        "num_segments": "1", "num_media": "2", "body": "hi"}

    service = "MG" + "f" * 32
    status, _, queued = answer("POST", messages, f"To=%2B1415&MessagingServiceSid={service}&"
                               "Body=hi".encode())
    assert (status, queued["status"], queued["from"], queued["messaging_service_sid"]) == (
        201, "accepted", None, service)

    assert answer("POST", messages, b"From=%2B14155550100&Body=hi")[2]["code"] == 21604
    assert answer("POST", messages, b"To=%2B14155550123&Body=hi")[2]["code"] == 21603
    assert answer("POST", messages, b"To=%2B14155550123&From=%2B14155550100")[2]["code"] == 21602
    assert answer("POST", calls, b"To=%2B14155550123")[:2] == (400, "BAD REQUEST")
    missing = answer("GET", calls, b"")
    assert missing[0] == 404 and missing[2]["code"] == 20404


def test_the_stand_in_stops_cleanly_with_a_keep_alive_connection_open(children, loopback_only):
    standin = Child("devhost.standin", ["--port", "0"], app_env("UseDevelopmentStorage=true"))
    children.append(standin)
    port = int(standin.wait_for(r"listening on http://127\.0\.0\.1:(\d+) ")[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    connection.request("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
                       body="To=%2B14155550123&From=%2B14155550100",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert connection.getresponse().read()
    try:
        assert standin.stop() == 0  # while the connection is still open
    finally:
        connection.close()
    lines = standin.drain(0.05)
    assert lines[-1] == "Stopping."
    assert "Traceback" not in standin.output()


def run_against_stand_in(faults, scenario):
    """`scenario(client, standin)` with twilio's own async client aimed at an in-process
    stand-in playing `faults`."""
    from twilio.rest import Client

    from devhost.standin import StandIn, StandInClientFactory

    async def main():
        standin = StandIn(0.0, faults=faults)
        server = await asyncio.start_server(standin.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        factory = StandInClientFactory(f"http://127.0.0.1:{port}")
        client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=factory())
        try:
            return await scenario(client, standin)
        finally:
            await client.http_client.close()
            server.close()
            await standin.close_connections()

    return asyncio.run(main())


def test_the_stand_in_limits_the_create_rate_and_lists_what_it_made():
    from twilio.base.exceptions import TwilioRestException

    from devhost.standin import Faults

    async def scenario(client, standin):
        made = [await client.messages.create_async(to=TO, from_=TWILIO_NUMBER, body=f"{i}")
                for i in range(2)]
        with pytest.raises(TwilioRestException) as limited:
            await client.messages.create_async(to=TO, from_=TWILIO_NUMBER, body="3")
        listed = await client.messages.list_async(to=TO, from_=TWILIO_NUMBER, limit=20)
        others = await client.messages.list_async(to="+14155550999", limit=20)
        return made, limited.value, listed, others, standin.ledger.as_dict()

    made, limited, listed, others, ledger = run_against_stand_in(Faults(rate=2), scenario)

    assert (limited.status, limited.code) == (429, 20429)
    assert [m.sid for m in listed] == [m.sid for m in reversed(made)]  # newest first
    assert others == []
    assert ledger["sids"] == {TO: [m.sid for m in made]}
    assert ledger["refused"] == {"429": 1} and len(ledger["created_at"]) == 2


def test_the_stand_in_fails_creates_and_times_out_after_making_one():
    from twilio.base.exceptions import TwilioRestException

    from devhost.standin import Faults

    async def failing(client, standin):
        with pytest.raises(TwilioRestException) as failed:
            await client.calls.create_async(to=TO, from_=TWILIO_NUMBER, url="https://x/v")
        return failed.value, standin.ledger.as_dict()

    failed, ledger = run_against_stand_in(Faults(fail_rate=1.0), failing)
    assert failed.status == 503 and ledger["sids"] == {}  # nothing made

    import aiohttp

    async def hanging(client, standin):
        with pytest.raises(aiohttp.ClientError):  # the connection closes with no answer
            await client.calls.create_async(to=TO, from_=TWILIO_NUMBER, url="https://x/v")
        return standin.ledger.as_dict()

    ledger = run_against_stand_in(Faults(timeout_rate=1.0, hang=0.1), hanging)
    assert len(ledger["sids"][TO]) == 1 and ledger["refused"] == {"timeout": 1}  # made


def test_with_callbacks_the_stand_in_says_so_and_prints_each_the_host_did_not_take(
        children, loopback_only):
    """With --callbacks its banner still said it sent no status callback, and a callback the
    local host refused (a Host it does not answer) was only counted, never shown (a newcomer's
    run): the banner says where they go, and each not taken is printed with the host's reason."""
    with refusing_local_host("the local host does not answer the name 'vm'") as target:
        standin = Child("devhost.standin", ["--port", "0", "--callbacks", target],
                        app_env("UseDevelopmentStorage=true"))
        children.append(standin)
        banner = standin.wait_for(r"listening on http://127\.0\.0\.1:(\d+) ")
        assert f"status callbacks (queued, sent, delivered) go to {target}" in banner.string
        connection = http.client.HTTPConnection("127.0.0.1", int(banner[1]), timeout=HTTP_TIMEOUT)
        connection.request(
            "POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            body=urlencode({"To": TO, "From": TWILIO_NUMBER, "Body": "hi",
                            "StatusCallback": f"{PUBLIC}/api/message_status"}),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert connection.getresponse().status == 201
        connection.close()

        refused = standin.wait_for(r"^status callback queued for SM\w+ ", timeout=20)

    assert refused.string.endswith("to /api/message_status not taken after 3 tries: 400 "
                                   "(the local host does not answer the name 'vm')")
