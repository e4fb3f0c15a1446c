"""The real app served over HTTP by devhost, with make_call pointed at the local Twilio stand-in.

    BENCH_TWILIO_API=http://127.0.0.1:PORT BENCH_FUNCTION_KEY=... python -m bench.served

A bench-only bootstrap, in its own process: it installs, through the app's own seam
(`shared.outbound.twilio_client.use_http_client`), devhost's `StandInClientFactory`
(devhost/standin.py, the one `python -m devhost.server --twilio-api` uses): twilio's
AsyncTwilioHttpClient with one change, every request goes to the stand-in's URL instead of
`https://api.twilio.com`. The app, the twilio library, aiohttp and its connection pool are otherwise
exactly what runs in production. Then it loads every function through the worker
(`WorkerHost.start`, with a function key for make_call as Azure requires), serves it with
`devhost.server.serve` on a free loopback port (with a larger listen backlog: see
`raise_listen_backlog`), prints `READY <port>`, and answers `modules` on stdin with the import state
of the modules the cold-start promise is about (this process's sys.modules is the one that counts)
and `backlog` with what the workaround did.

Nothing here imports twilio.rest or aiohttp: the factory imports them when make_call first
builds its client, which is the very moment the benchmark checks for.
"""

from __future__ import annotations

import json
import os
import sys

from bench.common import APP_ROOT
from devhost.standin import StandInClientFactory

KESTREL_BACKLOG = 512
WATCHED = (
    "twilio.rest",
    "aiohttp",
    "twilio.http.async_http_client",
    "phonenumbers",
    "azure.data.tables",
    "azure.identity",
)


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
    from shared.outbound import twilio_client

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
