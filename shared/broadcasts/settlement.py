"""What a chunk's sends leave to be written together, so that a send costs two storage writes of
its own (its key's claim and its record) and everything else is shared.

Each sent recipient needs two more rows: its row in the broadcast (sent, with the SID), which is
also the answer a later copy of its message finds, and its record's index row; a refused or
failed one needs only its row. Those of one chunk share a partition in each table (the rows of
one broadcast, the index of one kind), so each kind is one entity group transaction for the
whole chunk, written when the chunk's invocation ends (`write`).

Until then nothing is lost, only slower to see: a recipient whose rows were never written (the
host died, storage failed) has its key still `sending`, and the next copy of its message looks
the outcome up at Twilio (shared.records.idempotency), adopts the SID it finds, writes its index
row again (shared.records.store.adopt) and settles it, without sending again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.broadcasts import table
from shared.common import logs, redact
from shared.records import store

logger = logs.get_logger(__name__)


class Settlement:
    """The rows a chunk's (or one deferred recipient's) sends are waiting to have written."""

    def __init__(self, broadcast: str) -> None:
        self.broadcast = broadcast
        self.recipients: list[dict[str, Any]] = []
        self.index: list[dict[str, Any]] = []  # index rows (store.created's index_into)

    def mark(self, to: str, state: str, sid: str | None = None, error: str | None = None
             ) -> None:
        """Move one recipient on (sent, failed, refused) when the rows are written."""
        row = {"PartitionKey": self.broadcast, "RowKey": table.RECIPIENT_PREFIX + to,
               "State": state}
        if sid:
            row["Sid"] = sid
        if error:
            row["Error"] = error
        self.recipients.append(row)

    def __len__(self) -> int:
        return len(self.recipients) + len(self.index)

    async def write(self) -> None:
        """Write what is waiting: at most one transaction per table for a chunk's rows, both
        at once. Raises StorageUnavailable; what was not written stays waiting, to be
        written by the next call (each row is safe to write twice)."""
        if not len(self):
            return
        index, recipients = self.index, self.recipients
        await asyncio.gather(store.write_index(index), table.write_rows(recipients, merge=True))
        self.index, self.recipients = [], []
        for row in recipients:  # the chunk's line counts them; each one, at debug
            logger.debug("broadcast_send id=%s to=%s outcome=%s", self.broadcast,
                         redact.phone_number(row["RowKey"][len(table.RECIPIENT_PREFIX):]),
                         row["State"])
