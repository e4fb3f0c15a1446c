"""broadcast_poison: a broadcast message that exhausted its tries (`broadcast-sends-poison`).

Recorded as failed, unless an earlier try did send it (then it stays sent): nothing a broadcast
accepted is forgotten.
"""

import azure.functions as func

from shared import broadcasts


async def main(msg: func.QueueMessage) -> None:
    task = broadcasts.Task.from_json(msg.get_json())
    await broadcasts.give_up(task, f"gave up after {msg.dequeue_count} or more tries")
