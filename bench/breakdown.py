"""Where a warm request's time goes in our own code: each part called directly, no host.

A diagnostic, printed after the ratios it explains: when voice_url is slower than the floor, this
says which part of shared/ costs what, so the fix can be aimed. Each part is timed as the best of
several repeats of many calls (timeit's advice: the minimum is the cost, the rest is noise). The
parts are looked up by name: if shared/ is refactored and a name goes away, that line says so
instead of failing the benchmark.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import timeit
from collections.abc import Callable
from typing import Any

from bench.common import (
    AUTH_TOKEN,
    CALL_TO,
    FLOOR_ROOT,
    HOST_BASE_URL,
    PUBLIC_BASE_URL,
    SignedRequest,
    apply_app_settings,
    signed_webhook,
)

NUMBER = 1000
REPEAT = 5


def cost(fn: Callable[[], object]) -> float:
    """Seconds per call: the best of REPEAT runs of NUMBER calls."""
    return min(timeit.repeat(fn, number=NUMBER, repeat=REPEAT)) / NUMBER


def host_request(request: SignedRequest) -> Any:
    """An azure.functions.HttpRequest as the worker builds it for this request."""
    import azure.functions as func

    return func.HttpRequest(
        request.method, HOST_BASE_URL + request.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        params={}, route_params={}, body=request.body,
    )


def _part(label: str, make: Callable[[], Callable[[], object]]) -> str:
    try:
        fn = make()
        fn()  # a first call outside the timing: imports, caches
    except Exception as error:  # a renamed or refactored part: say so, keep going
        return f"    {label:<52} unavailable ({type(error).__name__}: {error})"
    return f"    {label:<52} {cost(fn) * 1e6:8.1f} µs"


def _module(name: str) -> Any:
    return importlib.import_module(name)


def webhook_parts() -> list[str]:
    apply_app_settings()
    voice = signed_webhook("voice")
    sms = signed_webhook("sms")
    req = host_request(voice)
    floor = floor_main()
    loop = asyncio.new_event_loop()  # the async mains' (not the worker's, closed by now)

    def settings() -> Any:
        return _module("shared.webhooks.settings").load_webhook_settings()

    def verify() -> Callable[[], object]:
        signature = _module("shared.webhooks.signature")
        route = _module("shared.common.routes").path("voice_url")
        return lambda: signature.verify(req, (AUTH_TOKEN,), PUBLIC_BASE_URL, route)

    def validator() -> Callable[[], object]:
        from twilio.request_validator import RequestValidator

        # The stock validator reads a plain dict's values as single strings (FormParams holds
        # lists, for the app's own validator).
        form = {name: values[0] for name, values in
                _module("shared.webhooks.signature").parse_form(voice.body).items()}
        check = RequestValidator(AUTH_TOKEN)
        url = PUBLIC_BASE_URL + voice.path
        return lambda: check.validate(url, form, voice.headers["X-Twilio-Signature"])

    lines = [
        _part("floor main (constant TwiML)", lambda: _caller(floor, req, loop)),
        _part("voice_url main, whole", lambda: _main("voice_url", req, loop)),
        _part("sms_url main, whole", lambda: _main("sms_url", host_request(sms), loop)),
        _part("  shared.webhooks.settings.load_webhook_settings", lambda: settings),
        _part("  shared.webhooks.signature.verify", verify),
        _part("    shared.webhooks.signature.parse_form (the body)",
              lambda: lambda: _module("shared.webhooks.signature").parse_form(voice.body)),
        _part("    twilio RequestValidator.validate (2 HMACs)", validator),
        _part("  shared.webhooks.twiml.say (VoiceResponse.to_xml)",
              lambda: lambda: _module("shared.webhooks.twiml").say("Hello Monkey!")),
        _part("  shared.webhooks.twiml.message (MessagingResponse.to_xml)",
              lambda: lambda: _module("shared.webhooks.twiml").message("Hey, thanks!")),
    ]
    # sms_url's storage clients hold aiohttp sessions on this loop: closed here, not left for
    # the interpreter's exit to report as unclosed.
    from devhost.worker_host import close_app_clients

    loop.run_until_complete(close_app_clients())
    loop.close()
    return lines


def make_call_parts() -> list[str]:
    apply_app_settings()
    body = json.dumps({"to": CALL_TO, "message": "Benchmark call"}).encode()
    req = host_request(SignedRequest("POST", "/api/make_call",
                                     {"Content-Type": "application/json"}, body))

    def parse() -> Callable[[], object]:
        calls = _module("shared.outbound.calls")
        read = _module("shared.outbound.request_body").read
        call_settings = _module("shared.outbound.settings").load_call_settings()
        return lambda: calls.parse(read(req, calls.FIELDS), call_settings)

    return [
        _part("  shared.outbound.settings.load_call_settings",
              lambda: _module("shared.outbound.settings").load_call_settings),
        _part("  shared.outbound.calls.parse (request_body.read, phonenumbers)", parse),
    ]


def function_main(function: str) -> Callable[..., object]:
    """A function folder's `main`, imported as a plain module (the worker has its own copy)."""
    return _module(function).main  # type: ignore[no-any-return]


def _main(function: str, req: Any, loop: asyncio.AbstractEventLoop) -> Callable[[], object]:
    return _caller(function_main(function), req, loop)


def _caller(main: Callable[[Any], object], req: Any, loop: asyncio.AbstractEventLoop
            ) -> Callable[[], object]:
    """A call of `main(req)`; an async main is run to completion on `loop`."""
    if not inspect.iscoroutinefunction(main):
        return lambda: main(req)
    return lambda: loop.run_until_complete(main(req))  # type: ignore[arg-type]


def floor_main() -> Callable[[Any], object]:
    """The floor function's main, loaded from its file (bench/floor_app is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_floor", FLOOR_ROOT / "floor" /
                                                  "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main  # type: ignore[no-any-return]
