"""The real local stack the console's browser tests drive: the app served over HTTP on 127.0.0.1
by the local host with a function key, Azurite for storage, the local stand-in of Twilio's API
(devhost.standin) in-process on its own loop, and Twilio's webhooks simulated, signed as Twilio
signs them (devhost.simulate). Nothing here talks to anything outside 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http.client
import itertools
import json
import random
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from conftest import ACCOUNT_SID, AUTH_TOKEN, TWILIO_NUMBER

from devhost import simulate, standin
from devhost.pytest_plugin import skip_unless_ci
from devhost.server import ServedHost
from shared.outbound import twilio_client
from shared.records import recording_media

# What make_call and send_sms give Twilio as their callbacks' origin, and what Twilio signs.
PUBLIC = "https://console-test.ngrok-free.app"
KEY = "console-browser-test-key"
HTTP_TIMEOUT = 10.0

# Fictional numbers (555-01xx is reserved for fiction in North America), one series per run so
# that the tests sharing one Azurite never meet each other's opt-outs or records.
_numbers = itertools.count(random.randint(0, 899))


def fresh_number() -> str:
    """A US number no other test of this run uses: +1 415-555-0100 to -9999, not 0100 itself
    (the app's own number)."""
    return f"+1415555{1000 + next(_numbers) % 9000:04d}"


# Debian's Chromium (scripts/test.sh installs it), started as this machine needs: without the
# background-networking flags it keeps trying to reach Google's hosts, which are not reachable.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync")


@contextlib.contextmanager
def chromium(tests: str, *extra_args: str) -> Iterator[Any]:
    """Headless Chromium through Playwright (never a browser Playwright downloads); `tests`
    names who skips without it (or fails, with CI=true)."""
    if not CHROMIUM.is_file():
        skip_unless_ci(f"Chromium is not installed ({CHROMIUM}; Debian: apt-get install "
                       "chromium)", tests)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_unless_ci("Playwright for Python is not installed (requirements-dev.txt)", tests)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield launched
        finally:
            launched.close()


class RunningStandIn:
    """devhost.standin's server on its own thread and event loop, on a free loopback port."""

    def __init__(self) -> None:
        self.server = standin.StandIn(0.0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="standin",
                                       daemon=True)
        self.thread.start()
        self.listener = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.server.handle, "127.0.0.1", 0), self.loop).result(5)
        self.url = f"http://127.0.0.1:{self.listener.sockets[0].getsockname()[1]}"

    def created(self, kind: str, to: str | None = None) -> list[dict[str, object]]:
        """What the app created here: "calls" or "messages", to `to` if given, oldest first."""
        made = list(self.server.resources)
        return [r for r in made if str(r["uri"]).split("/")[-2].lower() == kind
                and (to is None or r["to"] == to)]

    def close(self) -> None:
        async def stop() -> None:
            self.listener.close()
            await self.server.close_connections()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class ConsoleStack:
    """The served app (`url`), its stand-in of Twilio, and what a test does around the page."""

    served: ServedHost
    twilio: RunningStandIn
    factory: standin.StandInClientFactory
    numbers: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def page_url(self) -> str:
        return f"{self.url}/api/console/"

    def close(self) -> None:
        self.factory.close_all()
        twilio_client.use_http_client(None)
        recording_media.use_api_origin(None)
        self.twilio.close()

    # -- the app's API, with the key, as curl would use it ------------------------------------

    def api(self, method: str, path: str, body: dict | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict]:
        return keyed_request(self.served.port, KEY, method, path, body, headers)

    # -- Twilio's webhooks, signed for the public URL Twilio would have called ------------------

    def signed(self, route: str, params: dict[str, str]) -> int:
        """POST `params` to /api/`route` as Twilio does; the answer's status."""
        return self.signed_answer(route, params)[0]

    def signed_answer(self, route: str, params: dict[str, str]) -> tuple[int, str]:
        """POST `params` to /api/`route` as Twilio does; the answer's status and body (TwiML)."""
        path = f"/api/{route}"
        request = urllib.request.Request(  # noqa: S310 - our own loopback host
            self.url + path, data=urlencode(params).encode(), method="POST",
            headers={"Content-Type": simulate.FORM_CONTENT_TYPE,
                     "X-Twilio-Signature": simulate.signature(AUTH_TOKEN, PUBLIC + path, params)})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode()

    def _hook(self, kind: str, query: str = "", **options: object) -> simulate.Webhook:
        """`kind`'s webhook; `query` ("?broadcast=BC…") is on the URL the app gave Twilio."""
        path = "/api/" + simulate.KINDS[kind] + query
        return simulate.build(kind, self.url + path, AUTH_TOKEN, sign_url=PUBLIC + path,
                              account_sid=ACCOUNT_SID, **options)  # type: ignore[arg-type]

    def call_status(self, sid: str, status: str, to: str, **params: str) -> int:
        """A status callback for a call the app placed (From: the app's number)."""
        hook = self._hook("call-status", sid=sid, status=status, from_=TWILIO_NUMBER, to=to,
                          params=params)
        return simulate.send(hook, timeout=HTTP_TIMEOUT).status

    def message_status(self, sid: str, status: str, to: str, query: str = "",
                       **params: str) -> int:
        """A status callback for a text the app sent; `query` as on its StatusCallback (a
        broadcast's: "?broadcast=BC…")."""
        hook = self._hook("message-status", query, sid=sid, status=status, from_=TWILIO_NUMBER,
                          to=to, params=params)
        return simulate.send(hook, timeout=HTTP_TIMEOUT).status

    def inbound_text(self, from_: str, body: str) -> str:
        """A text someone sends to the app's number; its MessageSid."""
        hook = self._hook("sms", body=body, from_=from_, to=TWILIO_NUMBER)
        reply = simulate.send(hook, timeout=HTTP_TIMEOUT)
        assert reply.status == 200, (reply.status, reply.body)
        return hook.params["MessageSid"]

    def voicemail(self, caller: str, seconds: int, words: str) -> tuple[str, str]:
        """An inbound call that left a voicemail, as Twilio reports it: the call's status
        callback, the recording's and the transcription's. (CallSid, RecordingSid)."""
        call, recording = "CA" + secrets.token_hex(16), "RE" + secrets.token_hex(16)
        common = {"CallSid": call, "AccountSid": ACCOUNT_SID, "From": caller,
                  "To": TWILIO_NUMBER}
        assert self.signed("call_status", {**common, "CallStatus": "completed",
                                           "Direction": "inbound", "SequenceNumber": "0",
                                           "CallDuration": str(seconds + 5)}) == 204
        assert self.signed("recording_status", {
            **common, "RecordingSid": recording, "RecordingStatus": "completed",
            "RecordingDuration": str(seconds), "RecordingChannels": "1",
            "RecordingSource": "RecordVerb",
            "RecordingStartTime": email.utils.formatdate(usegmt=True)}) == 204
        assert self.signed("recording_status", {
            **common, "RecordingSid": recording, "TranscriptionSid": "TR" + secrets.token_hex(16),
            "TranscriptionStatus": "completed", "TranscriptionText": words}) == 204
        return call, recording


def keyed_request(port: int, key: str, method: str, path: str, body: dict | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """A request to a local host on `port` with the function key, as curl would send it (JSON
    body when there is one); (status, the JSON answer or {})."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    sent = {"x-functions-key": key, **(headers or {})}
    data = None
    if body is not None:
        sent["Content-Type"] = "application/json"
        data = json.dumps(body)
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    return response.status, json.loads(raw) if raw else {}


def clear_broadcast_queue(connection_string: str) -> None:
    """Leave no other test's broadcast message (one deferred, invisible for now) in the shared
    Azurite's queue: this test's host would send it, and a later test's host too."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    from shared.broadcasts import queue

    with (QueueClient.from_connection_string(connection_string, queue.QUEUE) as client,
          contextlib.suppress(ResourceNotFoundError)):
        client.clear_messages()


def start(served: ServedHost) -> ConsoleStack:
    """The stand-in, and the app's REST client and recording fetches aimed at it."""
    twilio = RunningStandIn()
    factory = standin.install(twilio.url)
    return ConsoleStack(served=served, twilio=twilio, factory=factory)
