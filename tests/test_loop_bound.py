"""The app's cached clients are bound to the event loop that made them (shared.common.loop_bound):
app code run on another loop gets clients of its own and closes only those, so the first loop's
stay cached and open (the local host's worker loop, while a test or script runs app code under
asyncio.run)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from conftest import run_app

from shared.outbound import twilio_client
from shared.outbound.settings import load_rest_settings
from shared.records import storage

T = TypeVar("T")


@pytest.fixture
def long_lived_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop running on a thread of its own, like the worker's."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    asyncio.run_coroutine_threadsafe(storage.close(), loop).result(10)
    asyncio.run_coroutine_threadsafe(twilio_client.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def on(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(work, loop).result(10)


def test_a_table_client_stays_cached_and_open_while_another_loop_makes_and_closes_its_own(
    azurite_storage, long_lived_loop
):
    first = on(long_lived_loop, storage.table("LoopBoundTest"))

    other = run_app(storage.table("LoopBoundTest"))  # its loop's clients, closed as it ends

    assert other is not first
    assert on(long_lived_loop, storage.table("LoopBoundTest")) is first
    entity = {"PartitionKey": "p", "RowKey": "r", "Value": 1}
    on(long_lived_loop, storage.on_table("LoopBoundTest", lambda t: t.upsert_entity(entity)))
    read = on(long_lived_loop, storage.on_table("LoopBoundTest", lambda t: t.get_entity("p", "r")))
    assert read["Value"] == 1


def test_the_twilio_client_stays_cached_while_another_loop_makes_and_closes_its_own(
    long_lived_loop,
):
    settings = load_rest_settings()

    async def client() -> object:
        return twilio_client.get_client(settings)

    first = on(long_lived_loop, client())
    other = run_app(client())

    assert other is not first
    assert on(long_lived_loop, client()) is first


def test_changed_credentials_get_a_new_client_and_the_old_ones_session_is_closed(
    long_lived_loop, monkeypatch
):
    closed: list[str] = []

    class Http:
        """An HTTP client that says when it is closed (the aiohttp one's close is awaited)."""

        def __init__(self, name: str) -> None:
            self.name = name

        async def close(self) -> None:
            closed.append(self.name)

    names = iter(("first", "second"))
    twilio_client.use_http_client(lambda: Http(next(names)))  # type: ignore[arg-type,return-value]
    try:

        async def client() -> object:
            return twilio_client.get_client(load_rest_settings())

        first = on(long_lived_loop, client())
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "a-rotated-token-of-32-characters")
        second = on(long_lived_loop, client())
        on(long_lived_loop, asyncio.sleep(0.05))  # the close runs on the loop, soon after

        assert second is not first
        assert closed == ["first"]
    finally:
        twilio_client.use_http_client(None)
