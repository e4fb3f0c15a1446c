"""Warm latency: signed voice_url and sms_url against the floor, same host, same process.

Both apps are loaded into one WorkerHost process (one worker, one event loop, one thread pool,
as the devhost runs them), warmed, then sent requests in one shuffled sequence so that no side
gets a quieter stretch of the run. Latency is the caller's round trip through
`WorkerHost.request` (routing, the worker's invocation, the thread pool hop, the response):
what the host would add in front of a request is the same on every side.
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench import breakdown
from bench.common import (
    APP_ROOT,
    APP_SETTINGS,
    FLOOR_ROOT,
    SignedRequest,
    apply_app_settings,
    signed_webhook,
)
from bench.stats import Report, fmt_seconds, percentile

TARGET_P50 = 1.25
WARMUP = 200
SEED = 6


@dataclass(frozen=True)
class Latencies:
    name: str
    samples: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)

    def line(self, floor: Latencies | None = None) -> str:
        text = (f"  {self.name:<26} n={len(self.samples):<5} p50 {fmt_seconds(self.p50):>8}  "
                f"p99 {fmt_seconds(self.p99):>8}")
        if floor is not None:
            text += (f"   vs floor: p50 {self.p50 / floor.p50:.2f}x, "
                     f"p99 {self.p99 / floor.p99:.2f}x")
        return text


def _kind(main: object) -> str:
    return "async" if inspect.iscoroutinefunction(main) else "sync"


def timed(send: Callable[[], tuple[int, bytes]], expect: bytes) -> float:
    """One request's round trip; a wrong status or body fails the benchmark, not the figure."""
    began = time.perf_counter()
    status, body = send()
    elapsed = time.perf_counter() - began
    if status != 200 or expect not in body:
        raise RuntimeError(f"unexpected answer {status}: {body[:200]!r}")
    return elapsed


def _stretch(sides: dict[str, tuple[list[Sender], bytes]], requests: int
             ) -> dict[str, list[float]]:
    """Each side's requests in one shuffled sequence, after WARMUP discarded of each."""
    rng = random.Random(SEED)
    order = [(name, i) for name in sides for i in range(requests + WARMUP)]
    warm = [(n, i) for n, i in order if i < WARMUP]
    measured = [(n, i) for n, i in order if i >= WARMUP]
    rng.shuffle(warm)
    rng.shuffle(measured)
    for name, i in warm:
        timed(sides[name][0][i], sides[name][1])
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for name, i in measured:
        samples[name].append(timed(sides[name][0][i], sides[name][1]))
    return samples


def _sender(host: object, request: SignedRequest) -> Callable[[], tuple[int, bytes]]:
    def send() -> tuple[int, bytes]:
        response = host.request(  # type: ignore[attr-defined]
            request.method, request.path, headers=request.headers, body=request.body
        )
        return response.status, response.body

    return send


Sender = Callable[[], tuple[int, bytes]]


def run(report: Report, requests: int) -> dict[str, Latencies]:
    """`requests` signed voice_url, sms_url, floor and peer requests each, in two shuffled
    stretches: voice_url, the floor and the peer; then sms_url and the floor again.

    sms_url writes each text to storage (Azurite here, another process on the same CPUs): in a
    stretch of its own, that work does not land on voice_url's figures. The Flask peer is
    interleaved with the rest, though it goes through no host: measured in a separate stretch
    of time, its figure would also carry whatever the machine was doing then.
    """
    print(f"\n== 2. Warm latency through the worker host, same process "
          f"({requests} requests each, shuffled together with the peer's, after {WARMUP} "
          f"discarded; sms_url in a stretch of its own with the floor) ==", flush=True)
    apply_app_settings()
    from bench import peer_flask
    from devhost.worker_host import WorkerHost

    app = WorkerHost.start(APP_ROOT)
    floor = WorkerHost.start(FLOOR_ROOT)
    # Distinct signed webhooks (fresh SIDs, fresh signatures), built before the clock starts.
    voice = [signed_webhook("voice") for _ in range(requests + WARMUP)]
    sms = [signed_webhook("sms") for _ in range(requests + WARMUP)]
    first: dict[str, tuple[list[Sender], bytes]] = {
        # With --call-flow, voice_url answers the flow's first step (or, closed, its voicemail).
        "voice_url": ([_sender(app, r) for r in voice],
                      b"<Say>" if APP_SETTINGS.get("CALL_FLOW") else b"<Say>Hello Monkey!</Say>"),
        # The floor gets the voice webhook's exact headers and body, to its own route.
        "floor": ([_sender(floor, r.to("/api/floor")) for r in voice], b"<Say>"),
        peer_flask.NAME: (peer_flask.senders(requests + WARMUP), b"<Say>Hello Monkey!</Say>"),
    }
    second: dict[str, tuple[list[Sender], bytes]] = {
        "sms_url": ([_sender(app, r) for r in sms], b"<Message"),
        "floor for sms_url": ([_sender(floor, r.to("/api/floor")) for r in sms], b"<Say>"),
    }
    samples = {**_stretch(first, requests), **_stretch(second, requests)}
    app.close()
    floor.close()

    result = {name: Latencies(name, s) for name, s in samples.items()}
    floor_lat = result["floor"]
    floors = {"voice_url": floor_lat, "sms_url": result["floor for sms_url"]}
    kinds = {name: _kind(breakdown.function_main(name)) for name in ("voice_url", "sms_url")}
    floor_kind = _kind(breakdown.floor_main())
    if set(kinds.values()) != {floor_kind}:
        # Sync functions run on the worker's thread pool, async ones on its loop: a different
        # path, whose cost is the host's, not our code's. Like must be compared with like.
        print(f"  NOTE: the floor is {floor_kind} but the webhooks are {kinds}: the ratios below "
              "compare different dispatch paths (thread pool vs event loop); make the floor's "
              "main the same kind for a like-for-like comparison")
    print(floor_lat.line())
    print(result["voice_url"].line(floor_lat))
    print(result["floor for sms_url"].line())
    print(result["sms_url"].line(floors["sms_url"]))
    for name in ("voice_url", "sms_url"):
        report.check(f"warm {name} p50 / floor p50", result[name].p50 / floors[name].p50,
                     TARGET_P50)
    print(f"  where the time goes in our code (each part called directly, no host; best of "
          f"{breakdown.REPEAT} x {breakdown.NUMBER} calls):")
    print("\n".join(breakdown.webhook_parts()), flush=True)
    return result
