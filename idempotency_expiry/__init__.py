"""idempotency_expiry: every 15 minutes, delete the Idempotency-Key rows older than their 24
hours (shared.records.idempotency.delete_expired): they hold numbers and answers nobody may
replay."""

import azure.functions as func


async def main(timer: func.TimerRequest) -> None:
    # Imported on the first invocation, not when the worker loads the function: the worker
    # loads every function of the app at start, and a webhook's cold start must not pay for
    # this function's modules (docs/benchmark.md, cold start).
    from shared.records import idempotency

    await idempotency.delete_expired()
