"""broadcast_send: the `broadcast-sends` queue: a chunk of a broadcast's recipients, or one
recipient whose send had to wait.

Each is sent once under the idempotency key (broadcast id, recipient), through send_sms's or
make_call's own code; a chunk sends for a few seconds and puts the rest back. What must wait
(Twilio's rate limit, a key in flight, an unknown outcome) goes back on the queue as its own
message visible after the wait, up to MAX_DEFERRALS times; any other exception
hands the message back to the queue, which delivers it again after host.json's
visibilityTimeout; after maxDequeueCount tries it moves to `broadcast-sends-poison`, where
broadcast_poison records it as failed.
"""

import azure.functions as func

from shared import logs, redact

logger = logs.get_logger("broadcast_send")

# Deferrals one recipient may take (each a second or more; an unknown outcome takes about ten
# before its key is released): beyond them, the queue's own tries and the poison queue decide.
MAX_DEFERRALS = 50


async def main(msg: func.QueueMessage) -> None:
    # Imported on the first invocation, not when the worker loads the function: the worker
    # loads every function of the app at start, and a webhook's cold start must not pay for
    # this function's modules (docs/benchmark.md, cold start).
    from shared import broadcast_delivery, broadcasts

    message = broadcasts.message(msg.get_json())
    if isinstance(message, broadcasts.Chunk):
        tally = await broadcast_delivery.deliver_chunk(message)
        logger.info(
            "broadcast_send id=%s outcome=chunk %s",
            message.broadcast,
            " ".join(f"{state.replace(' ', '-')}={n}" for state, n in tally.items()),
        )
        return
    task = message
    try:
        outcome = await broadcast_delivery.deliver(task)
    except broadcast_delivery.TryAgain as error:
        if task.deferrals >= MAX_DEFERRALS:
            logger.warning(
                "broadcast_send id=%s to=%s outcome=retry try=%s deferrals=%d reason=%s",
                task.broadcast,
                redact.phone_number(task.to),
                msg.dequeue_count,
                task.deferrals,
                error,
            )
            raise
        await broadcasts.defer(task, error.after)  # if this fails, the queue tries it again
        logger.info(
            "broadcast_send id=%s to=%s outcome=deferred after=%.1fs reason=%s",
            task.broadcast,
            redact.phone_number(task.to),
            error.after,
            error,
        )
        return
    logger.info(
        "broadcast_send id=%s to=%s outcome=%s",
        task.broadcast,
        redact.phone_number(task.to),
        outcome,
    )
