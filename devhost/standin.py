"""A local stand-in of Twilio's REST API, and the client that aims the app at it (dev only).

    python3 -m devhost.standin [--port 7080] [--delay 0]
    python -m devhost.server --twilio-api http://127.0.0.1:7080   # scripts/start.sh passes it on

Real Twilio is not always reachable (CI, a container, no account yet), and a real call costs
money. The stand-in answers the two requests the app makes, on 127.0.0.1 only, in plain HTTP/1.1
with keep-alive as api.twilio.com speaks it (over TLS there):

- `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`: 201 and a Twilio-shaped call resource
  (sid `CA` + 32 hex digits, status `queued`, to, from, ...) built from the form;
- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: 201 and a Twilio-shaped message
  (sid `SM` + 32 hex digits, status `queued`, to, from, body, num_segments "1", num_media, ...);
  sent through a Messaging Service (MessagingServiceSid, no From) it is `accepted`, with no
  sender yet and num_segments "0", as Twilio answers;
- a missing To (both), From (calls), From or MessagingServiceSid, or Body or MediaUrl
  (messages): Twilio's 400 error body; anything else: Twilio's 404 error body.

The form is read as Twilio reads it: a field may repeat (StatusCallbackEvent, MediaUrl). It
never calls back and places nothing: the call stays `queued` here. Status callbacks are
simulated, signed as Twilio signs them: `python -m devhost.simulate call-status --sid CA...
--status completed` (docs/local.md, "Try it without Twilio"). Standard library only, so any
Python 3.11 runs it, before `.venv` exists. It prints where it listens and one line per request
(the account SID shortened; never a header, so never the credentials the client sends).

- `GET .../Calls.json` and `.../Messages.json`: the calls and messages created so far, newest
  first, filtered by To and From, in one page shaped as Twilio's list endpoints shape it (how an
  Idempotency-Key or a broadcast looks up an unknown outcome).
- `GET .../Recordings/{RecordingSid}.mp3`: two seconds of silent MP3 for any recording (the
  console's voicemail player), until `DELETE .../Recordings/{RecordingSid}.json` (204) deletes
  it: both then answer Twilio's 404.

Twilio's limits and failures, for the benchmark's broadcast scenario (all off by default):
`--rate N` answers 429 (code 20429) to a create when N were made in the last second, and
`--max-concurrent N` to any request beyond N at once; `--fail-rate F` answers 503 (nothing
made) to that fraction of creates; `--timeout-rate F` makes the resource and then never
answers (the connection is closed after `--hang` seconds), the unknown outcome a client's
timeout leaves. `--seed` makes the draws repeatable.

`--callbacks URL` plays Twilio's status callbacks for the messages it creates (the broadcast
benchmark's load): each created message's StatusCallback gets `queued`, `sent` and `delivered`
(CALLBACK_DELAYS seconds after the create), signed with TWILIO_AUTH_TOKEN as Twilio signs them
(over the URL the app gave, which names its public origin) and delivered to URL instead (the
local host; `--callbacks` again for a second host: they take turns, as behind a load balancer).
A callback that fails is tried again CALLBACK_TRIES times, as Twilio does for one whose URL asks
for retries. The ledger then also holds each callback's latency and outcome. This mode imports
twilio's RequestValidator and aiohttp (the project's .venv).

`--control` is the benchmark's mode (`python -m bench.standin`): it prints `READY <port>` first,
logs nothing, answers `stats` on stdin with one JSON line (TCP connections accepted and requests
served so far: how the benchmark sees whether make_call reuses its connection), `ledger` with
one JSON line of what was created (the SIDs per To number, each create's time in seconds since
the stand-in started) and what was refused, `created` with how many were, and stops at EOF.

`StandInClientFactory(base_url)` is the other half, for
`shared.outbound.twilio_client.use_http_client`: twilio's own AsyncTwilioHttpClient whose every
request goes to `base_url` instead of api.twilio.com; the app, the twilio library, aiohttp and its
connection pool are otherwise exactly what runs in production. `base_url` must be a loopback URL
(`loopback_api_url`): the client sends the account's credentials with every request, and plain http
to another machine would hand them to anyone on the way.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import random
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TWILIO_API = "https://api.twilio.com"
API_VERSION = "2010-04-01"
BIND = "127.0.0.1"
DEFAULT_PORT = 7080
CREATE_PATH = re.compile(r"/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/(Calls|Messages)\.json")
# A recording: its audio (GET ....mp3) and the resource (DELETE ....json). The stand-in has every
# recording a simulated callback names, until it is deleted: its audio is two seconds of silence.
RECORDING_PATH = re.compile(
    r"/2010-04-01/Accounts/AC[0-9a-fA-F]{32}/Recordings/(RE[0-9a-fA-F]{32})\.(mp3|json)")
LIST_FIELDS = ("first_page_uri", "next_page_uri", "previous_page_uri", "uri")
MAX_HEADER_LINES = 100
MAX_BODY = 1_000_000  # a call or message creation is a few kilobytes

Form = dict[str, list[str]]

# Seconds after a message's create when Twilio reports each status (typical of a long code: the
# carrier's delivery receipt takes a few seconds), and tries of a callback that fails.
CALLBACK_DELAYS = (("queued", 0.3), ("sent", 1.0), ("delivered", 3.0))
CALLBACK_TRIES = 3
CALLBACK_TIMEOUT = 15.0  # Twilio's webhook timeout

logger = logging.getLogger("devhost.standin")


# ---- the app's side: twilio's client, re-aimed ---------------------------------------------------


def loopback_api_url(url: str) -> str:
    """`url` without a trailing slash if it is `http(s)://<loopback host>[:port][/path]`, where a
    stand-in of Twilio's API may listen; raises ValueError saying why not.

    Loopback is 127.0.0.0/8, ::1 or `localhost`. The REST client sends the account's credentials
    (HTTP Basic) with every request: over plain http to another machine they would travel in
    clear, so any other host is refused (this is a dev tool, not a proxy setting).
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as error:
        raise ValueError(f"{url!r} is not a URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// URL such as http://127.0.0.1:{DEFAULT_PORT}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not hold a user name or password")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError("the URL must not have a query or fragment")
    if not _is_loopback(parts.hostname):
        raise ValueError(
            f"{parts.hostname!r} is not a loopback address (127.0.0.1, ::1, localhost): the "
            "REST client sends the Twilio credentials with every request, and they must not "
            "leave this machine"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def aimed_at(url: str, base_url: str) -> str:
    """`url` (any Twilio REST URL: api.twilio.com, a region's or an edge's host) with its
    scheme and host replaced by `base_url`'s: path and query are kept."""
    parts = urlsplit(url)
    return base_url + parts.path + (f"?{parts.query}" if parts.query else "")


class StandInClientFactory:
    """A factory for `shared.outbound.twilio_client.use_http_client`: twilio's own async client,
    every request of which goes to `base_url` (a loopback URL, see `loopback_api_url`).

    It remembers each client it built and the event loop it was built on, so a process that is
    done with them can close their aiohttp sessions on that loop (`close_all`) instead of leaving
    aiohttp to warn about unclosed sessions at exit.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = loopback_api_url(base_url)
        self.built: list[tuple[Any, asyncio.AbstractEventLoop]] = []

    def __call__(self) -> Any:
        # Imported here, when make_call or send_sms first builds its client, as the app's own
        # default does: a webhook's cold start never imports twilio.rest or aiohttp.
        from twilio.http.async_http_client import AsyncTwilioHttpClient

        base_url = self.base_url

        class StandInHttpClient(AsyncTwilioHttpClient):
            """AsyncTwilioHttpClient whose requests go to the stand-in instead of Twilio."""

            async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
                return await super().request(method, aimed_at(url, base_url), *args, **kwargs)

        # As shared.outbound.twilio_client builds its default: no retries, the app's logger name.
        client = StandInHttpClient(logger=logging.getLogger("twilio.http"))
        self.built.append((client, asyncio.get_running_loop()))
        return client

    def close_all(self) -> None:
        """Close every client's session on its own loop (call from outside those loops)."""
        for client, loop in self.built:
            if not loop.is_closed() and loop.is_running():
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(client.close(), loop).result(10)
        self.built.clear()


def install(base_url: str) -> StandInClientFactory:
    """Send the app's REST requests (this process's) to the stand-in at `base_url`."""
    from shared.outbound import twilio_client
    from shared.records import recording_media

    factory = StandInClientFactory(base_url)
    twilio_client.use_http_client(factory)
    recording_media.use_api_origin(factory.base_url)  # a voicemail's audio, for the console
    return factory


# ---- the stand-in itself -------------------------------------------------------------------------


class Counters:
    """Written on the event loop thread, read by the stdin thread (ints: atomic under the GIL)."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.max_open = 0

    def as_dict(self) -> dict[str, int]:
        return {"connections": self.connections, "requests": self.requests,
                "open": self.open, "max_open": self.max_open}


def parse_form(body: bytes) -> Form:
    """A form body as Twilio reads it: every value of a repeated field, in order."""
    form: Form = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        form.setdefault(name, []).append(value)
    return form


def _first(form: Form, name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def call_resource(account_sid: str, form: Form) -> dict[str, object]:
    """A created call as Twilio's API returns it (the 2010-04-01 Call resource's fields)."""
    sid = "CA" + secrets.token_hex(16)
    now = formatdate(usegmt=True)
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Calls/{sid}"
    to, from_ = _first(form, "To") or "", _first(form, "From") or ""
    return {
        "account_sid": account_sid,
        "annotation": None,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": now,
        "date_updated": now,
        "direction": "outbound-api",
        "duration": None,
        "end_time": None,
        "forwarded_from": None,
        "from": from_,
        "from_formatted": from_,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": "PN" + "0" * 32,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": None,
        "status": "queued",
        "subresource_uris": {
            "notifications": f"{uri}/Notifications.json",
            "recordings": f"{uri}/Recordings.json",
            "payments": f"{uri}/Payments.json",
            "events": f"{uri}/Events.json",
            "siprec": f"{uri}/Siprec.json",
            "streams": f"{uri}/Streams.json",
            "transcriptions": f"{uri}/Transcriptions.json",
            "user_defined_message_subscriptions":
                f"{uri}/UserDefinedMessageSubscriptions.json",
            "user_defined_messages": f"{uri}/UserDefinedMessages.json",
        },
        "to": to,
        "to_formatted": to,
        "trunk_sid": None,
        "uri": f"{uri}.json",
    }


def message_resource(account_sid: str, form: Form) -> dict[str, object]:
    """A created message as Twilio's API returns it (the 2010-04-01 Message resource's fields).

    From a number: `queued`, one segment. Through a Messaging Service without From: `accepted`,
    `from` null and num_segments "0" until the service picks a sender, as Twilio documents.
    """
    sid = "SM" + secrets.token_hex(16)
    now = formatdate(usegmt=True)
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    from_ = _first(form, "From")
    service = _first(form, "MessagingServiceSid")
    through_service = service is not None and from_ is None
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": _first(form, "Body") or "",
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": from_,
        "messaging_service_sid": service,
        "num_media": str(len(form.get("MediaUrl", []))),
        "num_segments": "0" if through_service else "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "accepted" if through_service else "queued",
        "subresource_uris": {
            "media": f"{uri}/Media.json",
            "feedback": f"{uri}/Feedback.json",
        },
        "to": _first(form, "To") or "",
        "uri": f"{uri}.json",
    }


def _missing_field(resource: str, form: Form) -> tuple[int, str] | None:
    """Twilio's error code and message for a required field left out, or None."""
    if not _first(form, "To"):
        return 21604, "A 'To' phone number is required."
    if resource == "Calls":
        if not _first(form, "From"):
            return 21213, "Caller phone number is required"
    else:
        if not _first(form, "From") and not _first(form, "MessagingServiceSid"):
            return 21603, "A 'From' phone number is required."
        if not _first(form, "Body") and not form.get("MediaUrl"):
            return 21602, "Message body is required."
    return None


def error_body(status: int, code: int, message: str) -> dict[str, object]:
    """Twilio's error body: {"code", "message", "more_info", "status"}."""
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def silent_mp3(seconds: float = 2.0) -> bytes:
    """MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono: frames whose side information and main data
    are all zero, which every decoder plays as silence (a frame is 1,152 samples, 417 bytes)."""
    header = bytes([0xFF, 0xFB, 0x90, 0xC4])
    frame = header + bytes(417 - len(header))
    return frame * max(1, round(seconds * 44100 / 1152))


def _response(status: int, reason: str, payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n\r\n")
    return head.encode("latin-1") + body


def _shown(path: str) -> str:
    """The path as logged: the account SID shortened (AC12…ef)."""
    return re.sub(r"AC([0-9a-fA-F]{2})[0-9a-fA-F]{28}([0-9a-fA-F]{2})", r"AC\1…\2", path)


def answer(method: str, path: str, body: bytes) -> tuple[int, str, dict[str, object]]:
    """(status, reason, JSON payload) for one create request (no list: see StandIn.listed)."""
    match = CREATE_PATH.fullmatch(path)
    if method == "POST" and match:
        account_sid, resource = match.groups()
        form = parse_form(body)
        missing = _missing_field(resource, form)
        if missing is not None:
            return 400, "BAD REQUEST", error_body(400, *missing)
        build = call_resource if resource == "Calls" else message_resource
        return 201, "CREATED", build(account_sid, form)
    return 404, "NOT FOUND", error_body(
        404, 20404, f"The requested resource {path} was not found")


@dataclass
class Faults:
    """Twilio's limits and failures the stand-in plays (see the module's docstring)."""

    rate: float = 0.0  # creates a second; 0: no limit
    max_concurrent: int = 0  # requests at once; 0: no limit
    fail_rate: float = 0.0  # creates answered 503, nothing made
    timeout_rate: float = 0.0  # creates made and never answered
    hang: float = 30.0  # seconds before such a connection is closed
    seed: int | None = None


@dataclass
class Ledger:
    """What the stand-in made and refused: the benchmark's proof of no duplicates."""

    started: float = field(default_factory=time.monotonic)  # CLOCK_MONOTONIC: system-wide
    sids: dict[str, list[str]] = field(default_factory=dict)  # To -> SIDs created
    created_at: list[float] = field(default_factory=list)  # seconds since started
    # "429" (over the rate), "429 concurrent" (too many at once), "503", "timeout"
    refused: dict[str, int] = field(default_factory=dict)
    media_fetches: int = 0  # recordings' audio served (the console's player)
    # Status callbacks played (--callbacks): each one's last answer ("200", "503", "error") and
    # latency in seconds (of its last try), and the tries beyond the first.
    callbacks: dict[str, int] = field(default_factory=dict)
    callback_latencies: list[float] = field(default_factory=list)
    callback_retries: int = 0
    callbacks_pending: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"started": self.started, "sids": self.sids, "created_at": self.created_at,
                "refused": self.refused, "media_fetches": self.media_fetches,
                "callbacks": self.callbacks, "callback_latencies": self.callback_latencies,
                "callback_retries": self.callback_retries,
                "callbacks_pending": self.callbacks_pending}


class StandIn:
    """The server: one coroutine per connection, requests answered in order on it."""

    def __init__(self, delay: float, log: bool = False, faults: Faults | None = None,
                 callback_targets: Sequence[str] = ()) -> None:
        self.delay = delay
        self.log = log
        self.faults = faults or Faults()
        self.random = random.Random(self.faults.seed)  # noqa: S311 - fault draws, not secrets
        self.counters = Counters()
        self.connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.ledger = Ledger()
        self.callbacks = (Callbacks(callback_targets, self.ledger, log=log) if callback_targets
                          else None)
        self.resources: list[dict[str, object]] = []  # created, oldest first
        self.in_flight = 0
        self.recent: collections.deque[float] = collections.deque()  # creates in the last second
        self.deleted_recordings: set[str] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        c = self.counters
        c.connections += 1
        c.open += 1
        c.max_open = max(c.max_open, c.open)
        task = asyncio.current_task()
        if task is not None:
            self.connections[task] = writer
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            c.open -= 1
            if task is not None:
                self.connections.pop(task, None)
            writer.close()

    async def close_connections(self, timeout: float = 1.0) -> None:
        """Close the keep-alive connections still open, and let their handlers end: left to
        asyncio.run's cancellation, each would print a CancelledError traceback (Python 3.11)."""
        tasks = list(self.connections)
        for writer in self.connections.values():
            writer.close()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the client closed the connection."""
        line = await reader.readline()
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if not 0 <= length <= MAX_BODY:
            raise ValueError("unacceptable Content-Length")
        body = await reader.readexactly(length) if length else b""
        self.counters.requests += 1
        recording = RECORDING_PATH.fullmatch(target.partition("?")[0])
        if recording is not None:
            answer = self._recording(method, *recording.groups())
            if self.log:  # like every other request: its status line's code
                status_code = answer.split(b" ", 2)[1].decode("latin-1")
                print(f"{method} {_shown(target.partition('?')[0])} -> {status_code} recording",
                      file=sys.stderr, flush=True)
            writer.write(answer)
            await writer.drain()
            return headers.get("connection", "").lower() != "close"
        self.in_flight += 1
        try:
            status, reason, payload = await self._serve(method, target, body)
        finally:
            self.in_flight -= 1
        if self.log:
            path = target.split("?", 1)[0]
            what = payload.get("sid") if status == 201 else payload.get("message")
            print(f"{method} {_shown(path)} -> {status} {what}", file=sys.stderr, flush=True)
        writer.write(_response(status, reason, payload))
        await writer.drain()
        return headers.get("connection", "").lower() != "close"

    async def _serve(self, method: str, target: str, body: bytes) -> tuple[int, str, dict]:
        """One request's answer, Twilio's limits and failures played; raises ConnectionError
        for a create that is made and never answered."""
        path, _, query = target.partition("?")
        creating = method == "POST" and CREATE_PATH.fullmatch(path) is not None
        faults = self.faults
        if faults.max_concurrent and self.in_flight > faults.max_concurrent:
            return self._refused("429 concurrent", 429, "TOO MANY REQUESTS", 20429,
                                 "Too Many Requests")
        if creating and faults.rate:
            now = time.monotonic()
            while self.recent and self.recent[0] <= now - 1.0:
                self.recent.popleft()
            if len(self.recent) >= faults.rate:
                return self._refused("429", 429, "TOO MANY REQUESTS", 20429, "Too Many Requests")
            self.recent.append(now)  # admitted: counts against the rate, made or failed
        if self.delay:
            await asyncio.sleep(self.delay)  # Twilio's own time to create the call
        if method == "GET" and CREATE_PATH.fullmatch(path):
            return 200, "OK", self.listed(path, dict(parse_qsl(query)))
        if creating and self.random.random() < faults.fail_rate:
            return self._refused("503", 503, "SERVICE UNAVAILABLE", 20503, "Service Unavailable")
        status, reason, payload = answer(method, path, body)
        if status == 201:
            self._keep(payload)
            if self.callbacks is not None:
                self.callbacks.created(payload, parse_form(body))
            if self.random.random() < faults.timeout_rate:
                self.ledger.refused["timeout"] = self.ledger.refused.get("timeout", 0) + 1
                await asyncio.sleep(faults.hang)
                raise ConnectionError("made, never answered")
        return status, reason, payload

    def _recording(self, method: str, sid: str, extension: str) -> bytes:
        """A recording's audio (GET .mp3), or its deletion (DELETE .json: 204, then 404s)."""
        if sid in self.deleted_recordings:
            return _response(404, "NOT FOUND", error_body(404, 20404, "The requested resource "
                                                           f"/Recordings/{sid} was not found"))
        if method == "DELETE" and extension == "json":
            self.deleted_recordings.add(sid)
            return (f"HTTP/1.1 204 NO CONTENT\r\nContent-Length: 0\r\nConnection: keep-alive\r\n"
                    f"Date: {formatdate(usegmt=True)}\r\n\r\n").encode("latin-1")
        if method == "GET" and extension == "mp3":
            self.ledger.media_fetches += 1
            body = silent_mp3()
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n"
                    f"Date: {formatdate(usegmt=True)}\r\n\r\n")
            return head.encode("latin-1") + body
        return _response(405, "METHOD NOT ALLOWED", error_body(405, 20004, "Method not allowed"))

    def _refused(
        self, kind: str, status: int, reason: str, code: int, message: str
    ) -> tuple[int, str, dict]:
        self.ledger.refused[kind] = self.ledger.refused.get(kind, 0) + 1
        return status, reason, error_body(status, code, message)

    def _keep(self, payload: dict[str, object]) -> None:
        now = time.monotonic()
        self.resources.append(payload)
        self.ledger.sids.setdefault(str(payload["to"]), []).append(str(payload["sid"]))
        self.ledger.created_at.append(round(now - self.ledger.started, 4))

    def listed(self, path: str, query: dict[str, str]) -> dict[str, object]:
        """A list endpoint's one page: newest first, filtered by To and From."""
        kind = "calls" if path.endswith("/Calls.json") else "messages"
        wanted = {k.lower(): v for k, v in query.items() if k in ("To", "From")}
        items = [
            r for r in reversed(self.resources)
            if str(r["uri"]).split("/")[-2].lower() == kind
            and all(r.get(k) == v for k, v in wanted.items())
        ]
        size = int(query.get("PageSize") or 50)
        page: dict[str, object] = dict.fromkeys(LIST_FIELDS)
        page.update({kind: items[:size], "page": 0, "page_size": size, "start": 0,
                     "end": max(min(len(items), size) - 1, 0), "uri": path,
                     "first_page_uri": path})
        return page


class Callbacks:
    """Twilio's status callbacks for the messages the stand-in creates (`--callbacks`)."""

    def __init__(self, targets: Sequence[str], ledger: Ledger, log: bool = False) -> None:
        import os

        self.log = log  # print each callback the host did not take (the ledger counts them)
        self.targets = list(targets)
        self.turn = 0
        self.ledger = ledger
        self.token = os.environ.get("TWILIO_AUTH_TOKEN", "")
        if not self.token:
            raise SystemExit("error: --callbacks signs with TWILIO_AUTH_TOKEN, which is unset")
        self.session: Any = None

    def created(self, resource: dict[str, object], form: Form) -> None:
        url = (_first(form, "StatusCallback") or "").split("#", 1)[0]  # #rc=...: Twilio's own
        if not url or not str(resource.get("sid", "")).startswith("SM"):
            return
        for status, after in CALLBACK_DELAYS:
            self.ledger.callbacks_pending += 1
            asyncio.get_running_loop().call_later(
                after, lambda s=status: asyncio.ensure_future(self._send(url, resource, s)))

    async def _send(self, url: str, resource: dict[str, object], status: str) -> None:
        import aiohttp
        from twilio.request_validator import RequestValidator

        if self.session is None:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=64))
        params = {
            "MessageSid": str(resource["sid"]), "SmsSid": str(resource["sid"]),
            "AccountSid": str(resource["account_sid"]), "From": str(resource.get("from") or ""),
            "To": str(resource["to"]), "MessageStatus": status, "SmsStatus": status,
            "ApiVersion": API_VERSION,
        }
        signature = RequestValidator(self.token).compute_signature(url, params)
        parts = urlsplit(url)
        local = parts.path + (f"?{parts.query}" if parts.query else "")
        ledger = self.ledger
        outcome, latency, why = "error", 0.0, ""
        for attempt in range(CALLBACK_TRIES):
            target = self.targets[self.turn % len(self.targets)]
            self.turn += 1
            began = time.monotonic()
            try:
                async with self.session.post(target + local, data=params,
                                             headers={"X-Twilio-Signature": signature}) as got:
                    await got.read()
                    outcome = str(got.status)
                    why = got.headers.get("X-Devhost-Reason", "")
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                outcome, why = "error", type(error).__name__
            latency = time.monotonic() - began
            if outcome.startswith("2"):  # 200 with TwiML, 204 without: taken either way
                break
            if attempt + 1 < CALLBACK_TRIES:
                ledger.callback_retries += 1
                await asyncio.sleep(1.0)
        if self.log and not outcome.startswith("2"):
            print(f"status callback {status} for {resource['sid']} to {local.split('?')[0]} "
                  f"not taken after {CALLBACK_TRIES} tries: {outcome}"
                  + (f" ({why})" if why else ""), file=sys.stderr, flush=True)
        ledger.callbacks[outcome] = ledger.callbacks.get(outcome, 0) + 1
        ledger.callback_latencies.append(round(latency, 4))
        ledger.callbacks_pending -= 1

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def _control(server: StandIn, loop: asyncio.AbstractEventLoop, done: asyncio.Event) -> None:
    """stdin commands: `stats` prints the counters as JSON; EOF or `quit` stops the server."""
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps(server.counters.as_dict()), flush=True)
        elif line.strip() == "ledger":
            print(json.dumps(server.ledger.as_dict()), flush=True)
        elif line.strip() == "created":  # how many, cheaply: the benchmark's progress
            print(json.dumps({"created": len(server.ledger.created_at)}), flush=True)
        elif line.strip() == "quit":
            break
    loop.call_soon_threadsafe(done.set)


def ready_lines(url: str, callbacks: Sequence[str] = ()) -> list[str]:
    """What `python -m devhost.standin` prints once it listens."""
    if callbacks:
        sent = (f"It places no call and sends no text; each message's status callbacks (queued, "
                f"sent, delivered) go to {', '.join(callbacks)}.")
        then = ("  A call's callbacks are not sent: simulate them:  .venv/bin/python -m "
                "devhost.simulate call-status --sid CA... --status completed")
    else:
        sent = "It places no call, sends no text and sends no status callback."
        then = ("  Then simulate Twilio's callbacks:  .venv/bin/python -m devhost.simulate "
                "call-status --sid CA... --status completed")
    return [
        f"Twilio API stand-in listening on {url} (Calls.json and Messages.json). {sent}",
        f"  Start the app against it:  scripts/start.sh --twilio-api {url}",
        then,
        "Press Ctrl+C to stop.",
    ]


async def _serve(delay: float, port: int, control: bool, faults: Faults,
                 callbacks: Sequence[str] = ()) -> None:
    standin = StandIn(delay, log=not control, faults=faults, callback_targets=callbacks)
    try:
        server = await asyncio.start_server(standin.handle, BIND, port, backlog=1024)
    except OSError as error:
        raise SystemExit(f"error: cannot listen on {BIND}:{port}: {error.strerror}; is another "
                         "stand-in running? Try --port 0 (a free port).") from None
    port = server.sockets[0].getsockname()[1]
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    if control:
        threading.Thread(target=_control, args=(standin, loop, done), daemon=True).start()
        print(f"READY {port}", flush=True)
    else:
        # Ctrl+C, or a process manager's stop (SIGTERM): a clean stop. Windows has no
        # add_signal_handler; Ctrl+C is a KeyboardInterrupt there (main catches it).
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, AttributeError):
                loop.add_signal_handler(signum, done.set)
        print("\n".join(ready_lines(f"http://{BIND}:{port}", callbacks)), flush=True)
    async with server:
        await done.wait()
        server.close()
        await standin.close_connections()
        if standin.callbacks is not None:
            await standin.callbacks.close()
    if not control:
        print("\nStopping.", flush=True)


def main(argv: Sequence[str] | None = None, prog: str = "python -m devhost.standin") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A local stand-in of Twilio's Calls and Messages API on 127.0.0.1, for "
        "python -m devhost.server --twilio-api (docs/local.md, 'Try it without Twilio').",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on {BIND} (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds before each answer (default 0; the benchmark's is 0.1)")
    parser.add_argument("--control", action="store_true",
                        help="the benchmark's mode: print READY <port>, answer 'stats' on stdin, "
                        "stop at EOF, log nothing")
    parser.add_argument("--rate", type=float, default=0.0, metavar="N",
                        help="429 to a create when N were made in the last second (default: none)")
    parser.add_argument("--max-concurrent", type=int, default=0, metavar="N",
                        help="429 to any request beyond N at once (default: none)")
    parser.add_argument("--fail-rate", type=float, default=0.0, metavar="F",
                        help="fraction of creates answered 503, nothing made (default 0)")
    parser.add_argument("--timeout-rate", type=float, default=0.0, metavar="F",
                        help="fraction of creates made and never answered (default 0)")
    parser.add_argument("--hang", type=float, default=30.0, metavar="SECONDS",
                        help="how long such a create holds its connection (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="repeatable fault draws")
    parser.add_argument("--callbacks", action="append", default=[], metavar="URL",
                        help="send each created message's status callbacks (queued, sent, "
                        "delivered), signed with TWILIO_AUTH_TOKEN, to the host at this URL "
                        "(repeatable: the hosts take turns)")
    args = parser.parse_args(argv)
    faults = Faults(args.rate, args.max_concurrent, args.fail_rate, args.timeout_rate,
                    args.hang, args.seed)
    targets = [url.rstrip("/") for url in args.callbacks]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.delay, args.port, args.control, faults, targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
