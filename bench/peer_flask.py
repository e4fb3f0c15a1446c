"""The peer: the same voice webhook as Twilio's Flask quickstart writes it, for reference only.

Twilio's Python quickstart answers a call with Flask and `VoiceResponse`, and its "secure your
Flask app" guide checks X-Twilio-Signature with a `validate_twilio_request` decorator around
`RequestValidator.validate(request.url, request.form, signature)`. That is reproduced here as
closely as possible, and timed in-process through Flask's test client: the cost of answering a
signed webhook in the framework most Python users would reach for, with no Functions host in
front of it. It has no target; it tells whether our per-request cost is in line with the usual
way of doing the same thing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Any

from bench.common import ACCOUNT_SID, AUTH_TOKEN, CALL_TO, PHONE_NUMBER, apply_app_settings
from bench.stats import fmt_seconds
from bench.warm import Latencies

PEER_URL = "http://localhost/voice"  # what the test client's request.url is
NAME = "Flask quickstart (peer)"


def create_app() -> Any:
    """The quickstart's app: one route, the validation decorator, a VoiceResponse."""
    from flask import Flask, abort, request
    from twilio.request_validator import RequestValidator
    from twilio.twiml.voice_response import VoiceResponse

    app = Flask(__name__)

    def validate_twilio_request(f: Callable[..., Any]) -> Callable[..., Any]:
        """Validates that incoming requests genuinely originated from Twilio."""

        @wraps(f)
        def decorated_function(*args: Any, **kwargs: Any) -> Any:
            validator = RequestValidator(os.environ.get("TWILIO_AUTH_TOKEN"))
            request_valid = validator.validate(
                request.url, request.form, request.headers.get("X-TWILIO-SIGNATURE", "")
            )
            if request_valid:
                return f(*args, **kwargs)
            return abort(403)

        return decorated_function

    @app.route("/voice", methods=["GET", "POST"])
    @validate_twilio_request
    def voice() -> str:
        """Respond to incoming phone calls with a 'Hello world' message"""
        resp = VoiceResponse()
        resp.say("Hello Monkey!")
        return str(resp)

    return app


def senders(count: int) -> list[Callable[[], tuple[int, bytes]]]:
    """`count` signed voice webhooks, each ready to send through the peer's test client."""
    from devhost import simulate

    apply_app_settings()
    client = create_app().test_client()

    def sender(hook: simulate.Webhook) -> Callable[[], tuple[int, bytes]]:
        def send() -> tuple[int, bytes]:
            response = client.post("/voice", data=hook.body, headers=hook.headers)
            return response.status_code, response.data

        return send

    return [sender(simulate.build("voice", PEER_URL, AUTH_TOKEN, account_sid=ACCOUNT_SID,
                                  to=PHONE_NUMBER, from_=CALL_TO)) for _ in range(count)]


def report(latencies: dict[str, Latencies]) -> None:
    """Section 4: the peer's figures, measured interleaved with the warm-latency requests."""
    peer, floor, voice = latencies[NAME], latencies["floor"], latencies["voice_url"]
    print("\n== 4. Peer, for reference: Twilio's Flask quickstart voice webhook, in-process "
          "through Flask's test client (measured with section 2, interleaved) ==")
    print(peer.line(floor))
    print(f"  our voice_url through the worker host / the peer: p50 {voice.p50 / peer.p50:.2f}x, "
          f"p99 {voice.p99 / peer.p99:.2f}x")
    print(f"  (no target: the peer has no host in front of it; the floor, {fmt_seconds(floor.p50)}"
          " p50, is what the worker host alone costs)")
