"""The real app served over HTTP by devhost, with make_call pointed at the local Twilio stand-in.

    BENCH_TWILIO_API=http://127.0.0.1:PORT BENCH_FUNCTION_KEY=... python -m bench.served

A bench-only bootstrap, in its own process: it installs, through the app's own seam
(`shared.twilio_client.use_http_client`), a factory whose client is twilio's
AsyncTwilioHttpClient with one change: `https://api.twilio.com` becomes the stand-in's URL. The
app, the twilio library, aiohttp and its connection pool are otherwise exactly what runs in
production. Then it loads every function through the worker (`WorkerHost.start`, with a function
key for make_call as Azure requires), serves it with `devhost.server.serve` on a free loopback
port (with a larger listen backlog: see `raise_listen_backlog`), prints `READY <port>`, and
answers `modules` on stdin with the import state of the modules the cold-start promise is about
(this process's sys.modules is the one that counts) and `backlog` with what the workaround did.

Nothing here imports twilio.rest or aiohttp: the factory imports them when make_call first
builds its client, which is the very moment the benchmark checks for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

from bench.common import APP_ROOT

TWILIO_API = "https://api.twilio.com"
KESTREL_BACKLOG = 512
WATCHED = (
    "twilio.rest",
    "aiohttp",
    "twilio.http.async_http_client",
    "phonenumbers",
    "azure.data.tables",
    "azure.identity",
)


class StandInClientFactory:
    """A factory for `use_http_client`: twilio's own async client, re-aimed at `base_url`.

    It remembers each client it built and the event loop it was built on, so a process that is
    done with them (the in-process diagnostic) can close their aiohttp sessions on that loop
    instead of leaving aiohttp to warn about unclosed sessions at exit.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.built: list[tuple[Any, asyncio.AbstractEventLoop]] = []

    def __call__(self) -> Any:
        from twilio.http.async_http_client import AsyncTwilioHttpClient

        base_url = self.base_url

        class StandInHttpClient(AsyncTwilioHttpClient):
            """AsyncTwilioHttpClient whose requests go to the stand-in instead of Twilio."""

            async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
                if url.startswith(TWILIO_API):
                    url = base_url + url[len(TWILIO_API):]
                return await super().request(method, url, *args, **kwargs)

        # As shared.twilio_client builds its default: no retries, the app's logger name.
        client = StandInHttpClient(logger=logging.getLogger("twilio.http"))
        self.built.append((client, asyncio.get_running_loop()))
        return client

    def close_all(self) -> None:
        """Close every client's session on its own loop (call from outside those loops)."""
        for client, loop in self.built:
            if not loop.is_closed():
                asyncio.run_coroutine_threadsafe(client.close(), loop).result(10)
        self.built.clear()


def raise_listen_backlog() -> dict[str, int]:
    """Work around devhost.server's listen backlog of 5 (socketserver's default).

    100 callers connecting at once overflow a backlog of 5: the kernel drops or resets the
    excess connections, and the benchmark would time TCP retransmits instead of the app. Azure's
    host (Kestrel) listens with a backlog of 512, so the served host's server class is swapped,
    in this process only, for a subclass with that backlog. A no-op once devhost sets its own.
    """
    import devhost.server

    base = devhost.server.HostHTTPServer
    before = int(base.request_queue_size)
    if before >= KESTREL_BACKLOG:
        return {"from": before, "to": before}

    class BacklogServer(base):  # type: ignore[misc, valid-type]
        request_queue_size = KESTREL_BACKLOG

    devhost.server.HostHTTPServer = BacklogServer  # type: ignore[misc]
    return {"from": before, "to": KESTREL_BACKLOG}


def modules() -> dict[str, bool]:
    return {name: name in sys.modules for name in WATCHED}


def main() -> int:
    from shared import twilio_client

    twilio_client.use_http_client(StandInClientFactory(os.environ["BENCH_TWILIO_API"]))

    backlog = raise_listen_backlog()
    from devhost.server import serve
    from devhost.worker_host import WorkerHost

    host = WorkerHost.start(APP_ROOT, function_keys={"make_call": os.environ["BENCH_FUNCTION_KEY"]})
    served = serve(host, port=0)
    print(f"READY {served.port}", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "modules":
            print(json.dumps(modules()), flush=True)
        elif command == "backlog":
            print(json.dumps(backlog), flush=True)
        elif command == "quit":
            break
    served.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
