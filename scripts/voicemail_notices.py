#!/usr/bin/env python3
"""Send the voicemail texts recording_status still owes, once, by hand: what the
`voicemail_notices` timer function does every 15 minutes on Azure (the local host runs no
timers). Each goes under the callback's own idempotency key, so a text sent already is not sent
again, and a second run right after sends nothing (shared/callflows/voicemail.py).

    .venv/bin/python scripts/voicemail_notices.py

Settings come from the environment, else local.settings.json's Values (the Twilio credentials,
CALL_FLOW and AzureWebJobsStorage, as the app reads them). Exit 0 when it ran: a text Twilio
still refuses stays owed for the next run, and what failed (a setting, storage) is logged, as
the timer logs it; 2 when local.settings.json cannot be read.

Dev-only: it lives in scripts/, which .funcignore keeps out of the deployed package.
"""

from __future__ import annotations

import argparse
import sys

from by_hand import run

from shared.callflows import voicemail


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description="Send the voicemail texts recording_status still owes, "
                            "once (the voicemail_notices timer's work).").parse_args(argv)
    settled = run(voicemail.finish_owed)
    print(f"settled {settled} owed voicemail text{'s' if settled != 1 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
