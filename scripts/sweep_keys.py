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
import sys

from by_hand import run

from shared.records import idempotency, storage


async def _sweep() -> int:
    # The table is opened first: a missing setting or storage that is down shows here (the
    # sweep itself stops early, logged, only when it runs out of time).
    await storage.table(idempotency.TABLE)
    return await idempotency.delete_expired()


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description="Delete the Idempotency-Key rows whose 24 hours are "
                            "over, once (the idempotency_expiry timer's work).").parse_args(argv)
    deleted = run(_sweep)
    print(f"deleted {deleted} expired Idempotency-Key row{'s' if deleted != 1 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
