"""make_call concurrency through the served host, against the local Twilio stand-in (100 ms).

Three processes: this one generates load, `bench.served` is the app (one worker, as on Azure),
`bench.standin` is Twilio's Calls endpoint. In order:

1. sys.modules of the served process before any request, and after a signed voice_url and
   sms_url: twilio.rest and aiohttp must not be there yet;
2. the first make_call (builds the client: imports twilio.rest and aiohttp), then sys.modules
   again: now they must be;
3. the second make_call: the stand-in must have accepted no new TCP connection (the client's
   aiohttp pool kept the first one open);
4. a few more sequential calls: their median is "one call's wall time";
5. bursts of 100 concurrent make_calls: each burst's wall time against one call's.

The load generator is a few lines of asyncio streams (one connection per request, as separate
callers would open), so it adds no dependency and imports nothing the served process could see.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from bench import breakdown
from bench.common import (
    APP_ROOT,
    CALL_TO,
    FUNCTION_KEY,
    app_environ,
    apply_app_settings,
    signed_webhook,
)
from bench.proc import LineChild
from bench.stats import Report, fmt_seconds, median

TARGET_RATIO = 3.0
SEQUENTIAL = 7
READ_LIMIT = 1 << 20


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    elapsed: float


async def http_request(port: int, method: str, path: str, headers: dict[str, str],
                       body: bytes = b"") -> Answer:
    """One HTTP/1.1 request on its own connection to 127.0.0.1:port; the whole answer read."""
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=READ_LIMIT)
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
                f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        length = None
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        data = await (reader.readexactly(length) if length is not None else reader.read())
    finally:
        writer.close()
    return Answer(status, data, time.perf_counter() - began)


def make_call_request(i: int) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"to": CALL_TO, "message": f"Benchmark call {i}"}).encode()
    return {"Content-Type": "application/json", "x-functions-key": FUNCTION_KEY}, body


async def make_call(port: int, i: int) -> Answer:
    headers, body = make_call_request(i)
    answer = await http_request(port, "POST", "/api/make_call", headers, body)
    if answer.status != 201:
        raise RuntimeError(f"make_call answered {answer.status}: {answer.body[:300]!r}")
    return answer


async def burst(port: int, n: int, first_id: int) -> float:
    """n make_calls started together; the wall time until the last one has its 201."""
    began = time.perf_counter()
    await asyncio.gather(*(make_call(port, first_id + i) for i in range(n)))
    return time.perf_counter() - began


@dataclass
class ConcurrencyResult:
    modules_before: dict[str, bool]
    modules_after_webhooks: dict[str, bool]
    modules_after_call: dict[str, bool]
    first_call: float
    one_call: float
    connections_first: int
    connections_second: int
    bursts: list[float]
    burst_connections: list[int]
    max_open: int
    backlog: dict[str, int]
    inprocess_one_call: float = 0.0
    inprocess_bursts: list[float] | None = None


def run(report: Report, concurrent: int, bursts: int) -> ConcurrencyResult:
    """Start the stand-in and the served app, measure, then the in-process diagnostic; print."""
    print(f"\n== 3. make_call through the served host (HTTP, function key) against a local "
          f"Twilio Calls stand-in answering after 100 ms ({concurrent} concurrent x "
          f"{bursts} bursts) ==", flush=True)
    with LineChild("bench.standin", [], app_environ()) as standin:
        env = app_environ(BENCH_TWILIO_API=f"http://127.0.0.1:{standin.port}",
                          BENCH_FUNCTION_KEY=FUNCTION_KEY)
        with LineChild("bench.served", [], env) as served:
            result = asyncio.run(measure_served(served, standin, concurrent, bursts))
        one, walls = asyncio.run(_inprocess(standin.port, concurrent, bursts))
        result.inprocess_one_call, result.inprocess_bursts = one, walls
    _print(report, result, concurrent)
    return result


async def measure_served(
    served: LineChild, standin: LineChild, concurrent: int, bursts: int
) -> ConcurrencyResult:
    """Steps 1 to 5 of the module docstring, against an already started host and stand-in.

    The child processes are asked (stdin/stdout) between steps, never during a burst, so the
    blocking reads here never stall a request in flight.
    """
    port = served.port
    modules_before = served.ask("modules")
    for kind in ("voice", "sms"):
        hook = signed_webhook(kind)
        answer = await http_request(port, hook.method, hook.path, hook.headers, hook.body)
        if answer.status != 200:
            raise RuntimeError(f"{kind} webhook answered {answer.status} through the served host")
    modules_after_webhooks = served.ask("modules")

    first = await make_call(port, 0)
    modules_after_call = served.ask("modules")
    connections_first = standin.ask("stats")["connections"]
    second = await make_call(port, 1)
    connections_second = standin.ask("stats")["connections"]
    sequential = [second.elapsed]
    for i in range(2, SEQUENTIAL + 1):
        sequential.append((await make_call(port, i)).elapsed)

    walls, new_connections = [], []
    for b in range(bursts):
        before = standin.ask("stats")["connections"]
        walls.append(await burst(port, concurrent, 1000 * (b + 1)))
        new_connections.append(standin.ask("stats")["connections"] - before)
    stats = standin.ask("stats")
    return ConcurrencyResult(
        backlog=served.ask("backlog"),
        modules_before=modules_before,
        modules_after_webhooks=modules_after_webhooks,
        modules_after_call=modules_after_call,
        first_call=first.elapsed,
        one_call=median(sequential),
        connections_first=connections_first,
        connections_second=connections_second,
        bursts=walls,
        burst_connections=new_connections,
        max_open=stats["max_open"],
    )


async def _inprocess(standin_port: int, concurrent: int, bursts: int) -> tuple[float, list[float]]:
    """The same calls through WorkerHost in this process: no HTTP server beside the worker.

    A diagnostic, with no target: on Azure the HTTP front end is the .NET host, another process,
    while devhost's server runs its thread-per-connection HTTP parsing inside the worker's own
    process and under its GIL. This shows how much of the served figure is that. The load is
    generated on this process's loop, so it is no cleaner a measurement, just a different one.
    """
    from devhost.standin import StandInClientFactory

    apply_app_settings()
    from devhost.worker_host import WorkerHost
    from shared.outbound import twilio_client

    factory = StandInClientFactory(f"http://127.0.0.1:{standin_port}")
    twilio_client.use_http_client(factory)
    host = WorkerHost.start(APP_ROOT)

    async def call(i: int) -> float:
        headers, body = make_call_request(i)
        began = time.perf_counter()
        answer = await host.arequest("POST", "/api/make_call", headers=headers, body=body)
        if answer.status != 201:
            raise RuntimeError(f"make_call answered {answer.status}: {answer.body[:300]!r}")
        return time.perf_counter() - began

    try:
        await call(0)
        one = median([await call(i) for i in range(1, SEQUENTIAL + 1)])
        walls = []
        for b in range(bursts):
            began = time.perf_counter()
            await asyncio.gather(*(call(1000 * (b + 1) + i) for i in range(concurrent)))
            walls.append(time.perf_counter() - began)
    finally:
        factory.close_all()
        twilio_client.use_http_client(None)
        host.close()
    return one, walls


def _names(modules: dict[str, bool]) -> str:
    return ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in modules.items())


def _print(report: Report, r: ConcurrencyResult, concurrent: int) -> None:
    print(f"  imported in the host process, before any request:  {_names(r.modules_before)}")
    print(f"  ... after a signed voice_url and sms_url:            "
          f"{_names(r.modules_after_webhooks)}")
    print(f"  ... after the first make_call:                       "
          f"{_names(r.modules_after_call)}")
    print(f"  first make_call (builds the client): {fmt_seconds(r.first_call)}; "
          f"one warm make_call (median of {SEQUENTIAL}): {fmt_seconds(r.one_call)} "
          f"(the stand-in alone takes 100.0 ms)")
    print(f"  TCP connections accepted by the stand-in: {r.connections_first} after the first "
          f"call, {r.connections_second} after the second")
    for i, (wall, new) in enumerate(zip(r.bursts, r.burst_connections, strict=True), 1):
        print(f"  burst {i}: {concurrent} concurrent make_calls in {fmt_seconds(wall)} "
              f"= {wall / r.one_call:.2f}x one call; {new} new connections")
    print(f"  median burst {fmt_seconds(median(r.bursts))}, worst {fmt_seconds(max(r.bursts))} "
          f"= {max(r.bursts) / r.one_call:.2f}x one call")
    print(f"  most connections open at once at the stand-in: {r.max_open}")
    if r.backlog["from"] != r.backlog["to"]:
        print(f"  (workaround: devhost.server listens with a backlog of {r.backlog['from']}; "
              f"raised to {r.backlog['to']}, as Kestrel's, in the served process only)")
    if r.inprocess_bursts:
        walls = ", ".join(f"{w / r.inprocess_one_call:.2f}x" for w in r.inprocess_bursts)
        print(f"  diagnostic, no target: the same through WorkerHost in-process (no HTTP server "
              f"in the worker's process): one call {fmt_seconds(r.inprocess_one_call)}, "
              f"{concurrent} concurrent: {walls}")
    lazy = (not r.modules_before["twilio.rest"] and not r.modules_before["aiohttp"]
            and not r.modules_after_webhooks["twilio.rest"]
            and not r.modules_after_webhooks["aiohttp"]
            and r.modules_after_call["twilio.rest"] and r.modules_after_call["aiohttp"])
    print(f"  our code per make_call (called directly, no host; best of {breakdown.REPEAT} x "
          f"{breakdown.NUMBER} calls):")
    print("\n".join(breakdown.make_call_parts()))
    report.check("twilio.rest + aiohttp imported on the first make_call, not before", lazy, True)
    report.check(f"{concurrent} concurrent make_calls / one call (median of bursts)",
                 median(r.bursts) / r.one_call, TARGET_RATIO)
    report.check("second make_call of a warm process opens no new connection",
                 r.connections_second == r.connections_first, True)
