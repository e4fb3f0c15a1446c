"""broadcast_poison: a broadcast message that exhausted its tries (`broadcast-sends-poison`).

Its recipient (or every recipient of a chunk that could not be sent) is recorded as failed,
unless an earlier try did send it (then it stays sent): nothing a broadcast accepted is
forgotten. A message that is not one of ours is logged and dropped (shared.broadcasts.poisoned).
"""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(msg: func.QueueMessage) -> None:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.broadcasts import sending

    await sending.poisoned(msg.id or "-", msg.get_body(), msg.dequeue_count or 0)
