#!/usr/bin/env python3
"""Run the records' reconciliation once, by hand (the `reconcile` timer function runs it every 15
minutes): read Twilio's lists of messages and calls and fill in what the records miss. It never
sends anything, and a second run changes nothing (shared/records/reconcile.py).

    .venv/bin/python scripts/reconcile.py

Settings come from the environment, else local.settings.json's Values (the Twilio credentials
and AzureWebJobsStorage, as the app reads them). It reads Twilio's real API (the local host's
`--twilio-api` stand-in is not for this script). Exit 0 when the run finished, 3 when it ran
out of time (run it again: it carries on), 2 when a setting is missing or storage is down, 1
when Twilio could not be reached or refused.

Dev-only: it lives in scripts/, which .funcignore keeps out of the deployed package.
"""

from __future__ import annotations

import argparse
import sys

from by_hand import run

from shared.records import reconcile


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description="Reconcile the records with Twilio's lists, once "
                            "(never sends anything).").parse_args(argv)
    try:
        tallies = run(reconcile.run)
    except reconcile.Unlisted as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for tally in tallies:
        state = "done" if tally.finished else "out of time: run it again to carry on"
        print(f"{tally.kind}s: {tally.seen} listed, {tally.filled} filled in ({state})")
    return 0 if all(t.finished for t in tallies) else 3


if __name__ == "__main__":
    sys.exit(main())
