"""The Twilio REST client: built on the first REST request (make_call, send_sms), then reused.

`twilio.rest` and aiohttp are imported inside `get_client`, which only the REST functions reach
(docs/benchmark.md, cold start). Its HTTP client is wrapped in shared.telemetry's, which traces
each request when telemetry is on. The client's aiohttp session keeps its connections to
api.twilio.com open, so a warm process places a call or sends a text without a new handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from shared.common.loop_bound import PerLoop, close_on
from shared.outbound.settings import RestSettings
from shared.telemetry.twilio_http import TracedHttpClient

if TYPE_CHECKING:
    from twilio.http import AsyncHttpClient
    from twilio.rest import Client

HttpClientFactory = Callable[[], "AsyncHttpClient"]

# The longest URL Twilio takes in a URL parameter (Url, MediaUrl, StatusCallback): its error
# 21609 names 4,000 characters.
MAX_URL_LENGTH = 4000
# How much earlier than our clock Twilio may date a resource we created (clocks differ a little).
CLOCK_SKEW = datetime.timedelta(seconds=5)

_http_client_factory: HttpClientFactory | None = None
# Each loop's client, under the key it was built for (credentials' digest, HTTP client factory).
_clients: PerLoop[dict[tuple[object, ...], Client]] = PerLoop(dict)


def use_http_client(factory: HttpClientFactory | None) -> None:
    """Have the next client send its requests through `factory()` instead of aiohttp.

    The seam for tests and benchmarks (a stand-in of Twilio's API); None restores the default.
    """
    global _http_client_factory
    _http_client_factory = factory
    for loop, built in _clients.take_all():
        for client in built.values():
            close_on(loop, _closer(client))


# twilio-python logs every REST request and response (method, URL, headers) at INFO through
# these loggers: on Azure each line is billed by Application Insights, and the app logs its own
# one line per call or message. Their warnings and errors still come through.
_LIBRARY_HTTP_LOGGERS = ("twilio.http", "twilio.async_http_client", "twilio.http_client")


def _quiet_library_http_logs() -> None:
    for name in _LIBRARY_HTTP_LOGGERS:
        library = logging.getLogger(name)
        if library.level == logging.NOTSET:  # a level someone set on purpose is kept
            library.setLevel(logging.WARNING)


def _default_http_client() -> AsyncHttpClient:
    from twilio.http.async_http_client import AsyncTwilioHttpClient

    # No max_retries: a retried POST to Calls.json can place the same call twice. The timeout
    # argument is not passed: AsyncTwilioHttpClient ignores it (twilio-python issue #925), so
    # make_call bounds each request itself.
    return AsyncTwilioHttpClient(logger=logging.getLogger("twilio.http"))


def get_client(settings: RestSettings) -> Client:
    """The process's client for these credentials, built on first use.

    Must be called with an event loop running (the worker's, on Azure): the aiohttp session
    binds to it, so each loop has its own client (shared.common.loop_bound). The cache key
    holds a digest of the credentials, never the secret itself, so a changed setting gets a
    fresh client (the old one is closed) instead of a stale one.
    """
    digest = hashlib.sha256(
        "\0".join((settings.account_sid, settings.rest_username, settings.rest_password)).encode()
    ).hexdigest()
    key = (digest, _http_client_factory)
    built = _clients.here()
    if key in built:
        return built[key]

    from twilio.rest import Client

    _quiet_library_http_logs()
    # Every request traced at the HTTP layer when telemetry is on (shared.telemetry).
    http_client = TracedHttpClient((_http_client_factory or _default_http_client)())
    client = Client(
        username=settings.rest_username,
        password=settings.rest_password,
        account_sid=settings.account_sid,
        http_client=http_client,
    )
    for old in built.values():  # the settings changed: the old client's session is closed
        close_on(asyncio.get_running_loop(), _closer(old))
    built.clear()
    built[key] = client
    return client


def _closer(client: Client) -> Callable[[], Awaitable[object]]:
    async def close_http() -> None:
        close = getattr(client.http_client, "close", None)  # the aiohttp client has one
        if close is not None:
            await close()

    return close_http


async def close() -> None:
    """Close the running loop's client's HTTP session (a host shutting down, a test ending)."""
    for client in (_clients.take_here() or {}).values():
        with contextlib.suppress(Exception):
            await _closer(client)()


# How an unknown outcome's lookup reads Twilio's list (the newest first): a page at a time, until
# a page holds nothing created since the create was sent, and at most LOOKUP_PAGES pages. A
# number called or texted more often than that since is left ambiguous (docs/security.md).
LOOKUP_PAGE_SIZE = 50
LOOKUP_PAGES = 20


class LookupIncomplete(Exception):
    """Twilio's list held more than LOOKUP_PAGES pages created since the create was sent: the
    lookup cannot say it is not there (the key is then neither released nor sent again)."""


async def listed_since(first_page: Awaitable[Any], since: datetime.datetime) -> list[Any]:
    """The calls or messages of a list whose first page is `first_page` (a `page_async` of
    Calls or Messages, filtered, LOOKUP_PAGE_SIZE a page) that Twilio created at `since` or
    later, allowing for CLOCK_SKEW, the earliest first: the candidates for a create whose answer
    was lost. The next page is read while the last one still held one, so that one created
    before many newer ones (a busy number, hours later) is found; raises LookupIncomplete past
    LOOKUP_PAGES pages."""
    earliest = since - CLOCK_SKEW
    found: list[Any] = []
    page = await first_page
    for _ in range(LOOKUP_PAGES):
        recent = [item for item in page if item.date_created and item.date_created >= earliest]
        found.extend(recent)
        if not recent:
            break
        page = await page.next_page_async()
        if page is None:
            break
    else:
        raise LookupIncomplete(f"more than {LOOKUP_PAGES * LOOKUP_PAGE_SIZE} entries since")
    return sorted(found, key=lambda item: item.date_created)
