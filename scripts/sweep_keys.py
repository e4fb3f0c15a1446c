#!/usr/bin/env python3
"""Delete the expired Idempotency-Key rows once, by hand: what the `idempotency_expiry` timer
function does every 15 minutes on Azure (the local host runs no timers). A row is deleted once
its 24 hours are over (shared/records/idempotency.py); a second run right after deletes nothing.

    .venv/bin/python scripts/sweep_keys.py

Settings come from the environment, else local.settings.json's Values (AzureWebJobsStorage, as
the app reads it). Exit 0 when the sweep finished, 2 when the storage setting is missing or
malformed, or storage could not be reached.

Dev-only: it lives in scripts/, which .funcignore keeps out of the deployed package.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devhost import settings as local_settings  # noqa: E402
from devhost.appconfig import AppConfigError  # noqa: E402
from shared.common.settings import SettingsError  # noqa: E402
from shared.records import idempotency, storage  # noqa: E402


async def _sweep() -> int:
    try:
        # Every expired row is read first (one query): a missing setting or storage that is
        # down shows here, and the sweep itself stops early only when it runs out of time.
        await storage.table(idempotency.TABLE)
        return await idempotency.delete_expired()
    finally:
        await storage.close()  # its aiohttp session, on this run's loop


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description="Delete the Idempotency-Key rows whose 24 hours are "
                            "over, once (the idempotency_expiry timer's work).").parse_args(argv)
    try:
        found = local_settings.read(ROOT)
    except AppConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if found is not None:
        local_settings.apply(found)  # the environment wins, as on the local host
    try:
        deleted = asyncio.run(_sweep())
    except SettingsError as error:
        print(f"error: {error.describe()}", file=sys.stderr)
        return 2
    except storage.StorageUnavailable as error:
        print(f"error: storage: {error}", file=sys.stderr)
        return 2
    print(f"deleted {deleted} expired Idempotency-Key row{'s' if deleted != 1 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
