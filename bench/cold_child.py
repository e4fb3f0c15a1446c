"""One cold start: a fresh interpreter loads an app through the worker host and serves one request.

    BENCH_COLD_REQUEST=<JSON: app_root, method, path, headers, body> python -m bench.cold_child

The parent takes a CLOCK_MONOTONIC reading just before it spawns this process; this process
prints its own readings (time.monotonic() is CLOCK_MONOTONIC on Linux, the same clock in every
process) when its code starts, when every function is loaded, and when the first response is
in hand, then leaves with os._exit so interpreter teardown is not counted. The request arrives
already signed: signing is Twilio's work, not the app's, so it must not be charged to either side.

Imports are kept to the few modules below: whatever this file imports is paid on both sides of
the ratio and would only dilute it.
"""

import time

STARTED = time.monotonic()

import json  # noqa: E402 - after the first clock reading on purpose
import os  # noqa: E402
import sys  # noqa: E402

# What a webhook's cold start must not import: the REST client, the number library, storage.
WATCHED = ("twilio.rest", "aiohttp", "phonenumbers", "azure.data.tables", "azure.identity")


def main() -> None:
    spec = json.loads(os.environ["BENCH_COLD_REQUEST"])
    from devhost.worker_host import WorkerHost

    host = WorkerHost.start(spec["app_root"])
    loaded = time.monotonic()
    response = host.request(
        spec["method"], spec["path"], headers=spec["headers"], body=spec["body"].encode()
    )
    served = time.monotonic()
    print(json.dumps({
        "started": STARTED,
        "loaded": loaded,
        "served": served,
        "status": response.status,
        "functions": sorted(host.functions),
        "modules": sorted(m for m in WATCHED if m in sys.modules),
    }), flush=True)
    os._exit(0 if response.status == 200 else 1)


if __name__ == "__main__":
    main()
