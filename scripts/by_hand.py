"""What the scripts that run one of the timers' work by hand share (reconcile.py, sweep_keys.py;
the local host runs no timers): the settings as the local host takes them (the environment,
else local.settings.json's Values), the app's REST and storage clients closed on the run's own
loop, and exit code 2, with a line saying why, when a setting is missing or malformed or
storage cannot be reached.

Dev-only: it lives in scripts/, which .funcignore keeps out of the deployed package.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devhost import settings as local_settings  # noqa: E402
from devhost.appconfig import AppConfigError  # noqa: E402
from shared.common.settings import SettingsError  # noqa: E402
from shared.outbound import twilio_client  # noqa: E402
from shared.records import storage  # noqa: E402

T = TypeVar("T")


def run(work: Callable[[], Awaitable[T]]) -> T:
    """`work()` on a loop of its own, with the local settings applied; exits 2 (SystemExit)
    naming the setting, the settings file or storage when one of them fails. Anything else
    `work` raises (Twilio's refusals) is the caller's to word."""
    # azure-identity logs each credential it tried, at WARNING, a dozen lines: the one line
    # storage's failure ends in says what to do.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    try:
        found = local_settings.read(ROOT)
    except AppConfigError as error:
        _fail(str(error))
    if found is not None:
        local_settings.apply(found)  # the environment wins, as on the local host

    async def closing() -> T:
        try:
            return await work()
        finally:  # their aiohttp sessions, on this run's loop
            await storage.close()
            await twilio_client.close()

    try:
        return asyncio.run(closing())
    except SettingsError as error:
        _fail(error.describe())
    except storage.StorageUnavailable as error:
        _fail(f"storage: {error}")


def _fail(reason: str) -> NoReturn:
    print(f"error: {reason}", file=sys.stderr)
    raise SystemExit(2)
