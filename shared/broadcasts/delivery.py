"""How a broadcast's recipients fared after they were sent: delivered, or not.

A broadcast's calls and texts carry `?broadcast=<id>` on their status callback URL (Twilio signs
it with the rest of the URL). When a callback reports a final status, the recipient's row gets
`Delivery`: one storage write per recipient, on its final callback only, and the broadcast's
counts (shared.broadcasts.table) tell delivered from sent-and-waiting from undelivered. A text is
delivered when Twilio says `delivered`; a call when it was answered (`completed`).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.broadcasts import model, table

QUERY = "broadcast"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
# Final statuses, as Twilio names them in MessageStatus and CallStatus.
OUTCOMES = {
    "message": {"delivered": DELIVERED, "undelivered": UNDELIVERED, "failed": UNDELIVERED},
    "call": {"completed": DELIVERED, "busy": UNDELIVERED, "no-answer": UNDELIVERED,
             "failed": UNDELIVERED, "canceled": UNDELIVERED},
}
STATUS = {"message": "MessageStatus", "call": "CallStatus"}


async def follow(kind: str, query: Mapping[str, str], params: Mapping[str, str]) -> bool:
    """Keep a broadcast recipient's final status; False when the callback is not a broadcast's
    recipient's or not final (nothing written)."""
    broadcast = query.get(QUERY) or ""
    outcome = OUTCOMES[kind].get(params.get(STATUS[kind]) or "")
    to = params.get("To") or ""
    if outcome is None or not model.ID.fullmatch(broadcast) or not to.startswith("+"):
        return False
    return await table.deliver(broadcast, to, outcome)
