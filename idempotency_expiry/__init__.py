"""idempotency_expiry: every 15 minutes, delete the Idempotency-Key rows older than their 24
hours (shared.records.idempotency.delete_expired): they hold numbers and answers nobody may
replay."""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(timer: func.TimerRequest) -> None:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.records import idempotency

    await idempotency.delete_expired()
