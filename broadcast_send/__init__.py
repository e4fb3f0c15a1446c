"""broadcast_send: the `broadcast-sends` queue: a chunk of a broadcast's recipients, or one
recipient whose send had to wait. Each is sent once, through send_sms's or make_call's own
code (shared.broadcasts.sending.handle says how, and what is dropped, deferred or retried)."""

import azure.functions as func


async def main(msg: func.QueueMessage) -> None:
    # Imported on the first invocation, not when the worker loads the function: the worker
    # loads every function of the app at start, and a webhook's cold start must not pay for
    # this function's modules (docs/benchmark.md, cold start).
    from shared.broadcasts import sending

    await sending.handle(msg.id or "-", msg.get_body(), msg.dequeue_count or 0)
