"""broadcast_send: one recipient of a broadcast, from the `broadcast-sends` queue.

Sent once under the idempotency key (broadcast id, recipient), through send_sms's or
make_call's own code. An exception hands the message back to the queue, which delivers it again
after host.json's visibilityTimeout; after maxDequeueCount tries it moves to
`broadcast-sends-poison`, where broadcast_poison records it as failed.
"""

import azure.functions as func

from shared import logs, redact

logger = logs.get_logger("broadcast_send")


async def main(msg: func.QueueMessage) -> None:
    # Imported on the first invocation, not when the worker loads the function: the worker
    # loads every function of the app at start, and a webhook's cold start must not pay for
    # this function's modules (docs/benchmark.md, cold start).
    from shared import broadcast_delivery, broadcasts

    task = broadcasts.Task.from_json(msg.get_json())
    try:
        outcome = await broadcast_delivery.deliver(task)
    except broadcast_delivery.TryAgain as error:
        logger.warning(
            "broadcast_send id=%s to=%s outcome=retry try=%s reason=%s",
            task.broadcast,
            redact.phone_number(task.to),
            msg.dequeue_count,
            error,
        )
        raise
    logger.info(
        "broadcast_send id=%s to=%s outcome=%s",
        task.broadcast,
        redact.phone_number(task.to),
        outcome,
    )
