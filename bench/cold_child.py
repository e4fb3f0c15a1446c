"""One cold start: a fresh interpreter loads an app through the worker host and serves one request.

    BENCH_COLD_REQUEST=<JSON: app_root, method, path, headers, body> python -m bench.cold_child

The parent takes a CLOCK_MONOTONIC reading just before it spawns this process; this process
prints its own readings (time.monotonic() is CLOCK_MONOTONIC on Linux, the same clock in every
process) when its code starts, when every function is loaded, and when the first response is
in hand, then leaves with os._exit so interpreter teardown is not counted. The request arrives
already signed: signing is Twilio's work, not the app's, so it must not be charged to either side.

Imports are kept to the few modules below: whatever this file imports is paid on both sides of
the ratio and would only dilute it.

For `python -m bench.first_request` the request may also carry `mark` (write MARK to stderr once
every function is loaded: where `-X importtime`'s lines for the first request begin) and
`imports` (module names to import one by one after loading, each timed with the garbage
collection in it, before the request).
The benchmark's cold starts carry neither.
"""

import time

STARTED = time.monotonic()

import json  # noqa: E402 - after the first clock reading on purpose
import os  # noqa: E402
import sys  # noqa: E402

MARK = "bench.cold_child: every function loaded"
# What a webhook's cold start must not import: the REST client, the number library, storage.
WATCHED = ("twilio.rest", "aiohttp", "phonenumbers", "azure.data.tables", "azure.identity")


def timed_imports(names: list[str]) -> dict[str, list[float]]:
    """Import each module in turn: {name: [seconds, of which in garbage collection]}. A
    collection runs in whichever import crosses its threshold, so it is told apart."""
    if not names:
        return {}
    import contextlib
    import gc

    collecting: list[float] = []

    def on_collection(phase: str, info: dict) -> None:
        collecting.append(time.monotonic() if phase == "start" else -time.monotonic())

    gc.callbacks.append(on_collection)
    imports = {}
    for name in names:
        del collecting[:]
        began = time.monotonic()
        # A library's fallback that failed in the request fails here too: its search is timed.
        with contextlib.suppress(ImportError):
            __import__(name)
        took = time.monotonic() - began
        imports[name] = [took, -sum(collecting) if len(collecting) % 2 == 0 else 0.0]
    gc.callbacks.remove(on_collection)
    return imports


def main() -> None:
    spec = json.loads(os.environ["BENCH_COLD_REQUEST"])
    from devhost.worker_host import WorkerHost

    host = WorkerHost.start(spec["app_root"])
    if spec.get("mark"):
        print(MARK, file=sys.stderr, flush=True)
    imports = timed_imports(spec.get("imports", ()))
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
        "imports": imports,
    }), flush=True)
    os._exit(0 if response.status == 200 else 1)


if __name__ == "__main__":
    main()
