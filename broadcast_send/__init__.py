"""broadcast_send: the `broadcast-sends` queue: a chunk of a broadcast's recipients, or one
recipient whose send had to wait. Each is sent once, through send_sms's or make_call's own
code (shared.broadcasts.sending.handle says how, and what is dropped, deferred or retried)."""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(msg: func.QueueMessage) -> None:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.broadcasts import sending

    await sending.handle(msg.id or "-", msg.get_body(), msg.dequeue_count or 0,
                         msg.insertion_time)
