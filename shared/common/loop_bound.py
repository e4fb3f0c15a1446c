"""Clients bound to an event loop: the app's Twilio and storage clients hold aiohttp sessions,
which belong to the loop they were made on and must be closed on it.

On Azure the worker runs every async function on one loop, so each cache holds one set of
clients for the life of the process. A process that runs the app's code on more than one loop
(the local host's worker loop, a test's or a script's `asyncio.run`) gets a set per loop
(`PerLoop`) instead of one slot that each loop would overwrite, which dropped the other loop's
clients unclosed. A client that is replaced (its settings changed) is closed on its own loop
(`close_on`) at once: a process's environment is fixed for its life on Azure, so that happens
only in tests and tools, never under a request in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """One value per running event loop, forgotten with its loop."""

    def __init__(self, new: Callable[[], T]) -> None:
        self._new = new
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def here(self) -> T:
        """The running loop's value, made on first use. Raises RuntimeError outside a loop."""
        loop = asyncio.get_running_loop()
        value = self._values.get(loop)
        if value is None:
            value = self._values[loop] = self._new()
        return value

    def take_here(self) -> T | None:
        """The running loop's value, removed (for closing it); None when it has none."""
        return self._values.pop(asyncio.get_running_loop(), None)

    def take_all(self) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        """Every loop's value, removed (a setting that changes them all)."""
        taken = list(self._values.items())
        self._values.clear()
        return taken

    def values(self) -> list[T]:
        return list(self._values.values())


def close_on(loop: asyncio.AbstractEventLoop, closing: Callable[[], Awaitable[object]]) -> None:
    """Run `closing()` on `loop`, from any thread, without waiting for it; a failure to close is
    ignored (the client is no longer used). A loop that no longer runs took its connections
    with it: nothing is left to close there."""
    if loop.is_closed() or not loop.is_running():
        return

    async def quietly() -> None:
        with contextlib.suppress(Exception):
            await closing()

    asyncio.run_coroutine_threadsafe(quietly(), loop)
