"""Profile our code where the benchmark finds it slow: `python -m bench.profile webhook|make_call`.

    webhook    cProfile of shared.webhooks.respond while signed voice_url requests go through
               the worker host (enabled and disabled around each awaited call, on the worker's
               event loop thread, so only our code and what it calls is counted)
    make_call  cProfile of the worker's event loop thread while bursts of concurrent make_calls
               go through the worker host to the local Twilio stand-in (everything make_call
               does on the loop: our code, twilio, aiohttp, the worker's invocation)

The benchmark's ratios say that something is slow; this says what, so a fix in shared/ can be
aimed and checked. Profiling slows everything it measures: read proportions, not durations.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import APP_ROOT, app_environ, apply_app_settings, signed_webhook


def profile_webhook(requests: int, top: int) -> None:
    apply_app_settings()
    from devhost.worker_host import WorkerHost
    from shared import webhooks

    host = WorkerHost.start(APP_ROOT)
    hooks = [signed_webhook("voice") for _ in range(requests)]
    for hook in hooks[:200]:  # warm
        host.request(hook.method, hook.path, headers=hook.headers, body=hook.body)
    profiler = cProfile.Profile()
    respond: Callable[..., Any] = webhooks.respond

    async def profiled(*args: Any, **kwargs: Any) -> Any:
        # respond is a coroutine function (the webhooks run on the worker's loop): calling it
        # only builds the coroutine, so the profile must span the await. respond does no I/O,
        # so nothing else runs on the loop in between.
        profiler.enable()
        try:
            return await respond(*args, **kwargs)
        finally:
            profiler.disable()

    webhooks.respond = profiled  # the worker's voice_url calls webhooks.respond by attribute
    try:
        for hook in hooks[200:]:
            host.request(hook.method, hook.path, headers=hook.headers, body=hook.body)
    finally:
        webhooks.respond = respond
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def profile_make_call(concurrent: int, bursts: int, top: int) -> None:
    from bench.concurrency import make_call_request
    from bench.proc import LineChild
    from devhost.standin import StandInClientFactory

    apply_app_settings()
    with LineChild("bench.standin", [], app_environ()) as standin:
        from devhost.worker_host import WorkerHost
        from shared.outbound import twilio_client

        factory = StandInClientFactory(f"http://127.0.0.1:{standin.port}")
        twilio_client.use_http_client(factory)
        host = WorkerHost.start(APP_ROOT)

        async def burst(n: int, first: int) -> None:
            answers = await asyncio.gather(*(
                host.arequest("POST", "/api/make_call", headers=headers, body=body)
                for headers, body in (make_call_request(first + i) for i in range(n))))
            if any(a.status != 201 for a in answers):
                raise RuntimeError(f"make_call answered {[a.status for a in answers][:5]}")

        asyncio.run(burst(5, 0))  # builds the client, opens connections
        loop = factory.built[0][1]
        profiler = cProfile.Profile()
        loop.call_soon_threadsafe(profiler.enable)
        time.sleep(0.05)
        for b in range(bursts):
            asyncio.run(burst(concurrent, 1000 * (b + 1)))
        done = threading.Event()
        loop.call_soon_threadsafe(lambda: (profiler.disable(), done.set()))
        done.wait(10)
        factory.close_all()
        twilio_client.use_http_client(None)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("webhook", "make_call"))
    parser.add_argument("--requests", type=int, default=3000, help="webhook requests")
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--top", type=int, default=30, help="rows of the profile to print")
    args = parser.parse_args(argv)
    if args.what == "webhook":
        profile_webhook(max(args.requests, 300), args.top)
    else:
        profile_make_call(args.concurrent, args.bursts, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
