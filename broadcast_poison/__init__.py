"""broadcast_poison: a broadcast message that exhausted its tries (`broadcast-sends-poison`).

Its recipient (or every recipient of a chunk that could not be sent) is recorded as
failed, unless an earlier try did send it (then it stays sent): nothing a broadcast accepted is
forgotten.
"""

import asyncio

import azure.functions as func


async def main(msg: func.QueueMessage) -> None:
    # Imported on the first invocation, not when the worker loads the function: the worker
    # loads every function of the app at start, and a webhook's cold start must not pay for
    # this function's modules (docs/benchmark.md, cold start).
    from shared import broadcasts

    message = broadcasts.message(msg.get_json())
    reason = f"gave up after {msg.dequeue_count} or more tries"
    tasks = message.tasks() if isinstance(message, broadcasts.Chunk) else [message]
    await asyncio.gather(*(broadcasts.give_up(task, reason) for task in tasks))
