"""reconcile: every 15 minutes, read Twilio's lists of messages and calls back and fill in what
the records miss (texts that came in but were not stored, final statuses whose callbacks never
came, calls and texts made outside the app); it never sends anything
(shared.records.reconcile). By hand: `.venv/bin/python scripts/reconcile.py`, or on Azure the
host's admin endpoint, POST /admin/functions/reconcile."""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(timer: func.TimerRequest) -> None:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.records import reconcile

    await reconcile.scheduled()
