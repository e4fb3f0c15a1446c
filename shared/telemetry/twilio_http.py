"""Twilio's REST requests, traced at the HTTP layer: `TracedHttpClient` wraps the HTTP client
the twilio library sends through (shared.outbound.twilio_client wraps every one it builds), so
each request of every resource (a create, a list, a lookup) gets its client span and its
metrics without the code that makes it knowing. Off, a request costs one settings check more.
"""

from __future__ import annotations

from typing import Any

from shared import telemetry


class TracedHttpClient:
    """The twilio library's async HTTP client `inner`, each request inside a span when
    telemetry is on (shared.telemetry.runtime.twilio_request); everything else is `inner`'s."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        # is_async, close, session, last_request...: the wrapped client's own.
        return getattr(self.inner, name)

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if not telemetry.enabled():
            return await self.inner.request(method, url, *args, **kwargs)
        from shared.telemetry import runtime

        return await runtime.twilio_request(self.inner.request, method, url, args, kwargs)
