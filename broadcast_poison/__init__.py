"""broadcast_poison: a broadcast message that exhausted its tries (`broadcast-sends-poison`).

Its recipient (or every recipient of a chunk that could not be fanned out) is recorded as
failed, unless an earlier try did send it (then it stays sent): nothing a broadcast accepted is
forgotten.
"""

import asyncio

import azure.functions as func

from shared import broadcasts


async def main(msg: func.QueueMessage) -> None:
    message = broadcasts.message(msg.get_json())
    reason = f"gave up after {msg.dequeue_count} or more tries"
    tasks = message.tasks() if isinstance(message, broadcasts.Chunk) else [message]
    await asyncio.gather(*(broadcasts.give_up(task, reason) for task in tasks))
