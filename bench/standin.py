"""A local stand-in of Twilio's Calls endpoint: answers every call creation after 100 ms.

    python -m bench.standin [--delay 0.1]

Runs in its own process (so its event loop competes with neither the host nor the load
generator for the GIL), listens on a free loopback port, prints `READY <port>`, and then answers
`stats` on stdin with one JSON line: TCP connections accepted and requests served so far. That
count is how the benchmark sees whether make_call reuses its connection: a warm client that
opens a new connection per call shows up here as one more accepted connection per call.

It speaks plain HTTP/1.1 with keep-alive, as api.twilio.com does (over TLS there): a POST to
`/2010-04-01/Accounts/{AccountSid}/Calls.json` gets a 201 with a Twilio-shaped call resource
built from the form (To, From); anything else gets Twilio's 404 error body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sys
import threading
from collections.abc import Sequence
from email.utils import formatdate
from urllib.parse import parse_qsl

CALLS_PATH = re.compile(r"/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Calls\.json")
MAX_HEADER_LINES = 100


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


def call_resource(account_sid: str, form: dict[str, str]) -> dict[str, object]:
    """A created call as Twilio's API returns it (the 2010-04-01 Call resource's fields)."""
    sid = "CA" + secrets.token_hex(16)
    now = formatdate(usegmt=True)
    uri = f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}"
    return {
        "account_sid": account_sid,
        "annotation": None,
        "answered_by": None,
        "api_version": "2010-04-01",
        "caller_name": None,
        "date_created": now,
        "date_updated": now,
        "direction": "outbound-api",
        "duration": None,
        "end_time": None,
        "forwarded_from": None,
        "from": form.get("From", ""),
        "from_formatted": form.get("From", ""),
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
        "to": form.get("To", ""),
        "to_formatted": form.get("To", ""),
        "trunk_sid": None,
        "uri": f"{uri}.json",
    }


def _response(status: int, reason: str, payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n\r\n")
    return head.encode("latin-1") + body


class StandIn:
    """The server: one coroutine per connection, requests answered in order on it."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.counters = Counters()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        c = self.counters
        c.connections += 1
        c.open += 1
        c.max_open = max(c.max_open, c.open)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            c.open -= 1
            writer.close()

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
        body = await reader.readexactly(length) if length else b""
        self.counters.requests += 1
        await asyncio.sleep(self.delay)  # Twilio's own time to create the call

        path = target.split("?", 1)[0]
        match = CALLS_PATH.fullmatch(path)
        if method == "POST" and match:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            writer.write(_response(201, "CREATED", call_resource(match.group(1), form)))
        else:
            writer.write(_response(404, "NOT FOUND", {
                "code": 20404,
                "message": f"The requested resource {path} was not found",
                "more_info": "https://www.twilio.com/docs/errors/20404",
                "status": 404,
            }))
        await writer.drain()
        return headers.get("connection", "").lower() != "close"


def _control(server: StandIn, loop: asyncio.AbstractEventLoop, done: asyncio.Event) -> None:
    """stdin commands: `stats` prints the counters as JSON; EOF or `quit` stops the server."""
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps(server.counters.as_dict()), flush=True)
        elif line.strip() == "quit":
            break
    loop.call_soon_threadsafe(done.set)


async def _serve(delay: float) -> None:
    standin = StandIn(delay)
    server = await asyncio.start_server(standin.handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=_control, args=(standin, loop, done), daemon=True).start()
    print(f"READY {port}", flush=True)
    async with server:
        await done.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.standin", description=__doc__)
    parser.add_argument("--delay", type=float, default=0.1,
                        help="seconds before each answer (default 0.1, as the issue asks)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
