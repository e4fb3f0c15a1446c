"""Writing many rows of a table in as few storage operations as Table Storage allows.

An entity group transaction takes up to 100 operations on one partition and is one request
(one round trip, one billed transaction) that succeeds or fails whole. A broadcast's chunk
settles its recipients this way (shared.broadcasts.settlement): their rows, their keys' answers
and their records' index rows each share a partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from shared.records import storage

TRANSACTION_SIZE = 100  # Table Storage's limit on one entity group transaction
CONCURRENT = 8  # transactions of one call in flight at once


def transactions(rows: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows grouped by partition, then cut into transactions of at most TRANSACTION_SIZE.
    A row key given twice in one partition keeps its last row (a transaction may not name one
    entity twice)."""
    partitions: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        partitions.setdefault(str(row["PartitionKey"]), {})[str(row["RowKey"])] = row
    cut: list[list[dict[str, Any]]] = []
    for by_key in partitions.values():
        same = list(by_key.values())
        cut += [same[i : i + TRANSACTION_SIZE] for i in range(0, len(same), TRANSACTION_SIZE)]
    return cut


async def upsert(table: str, rows: Iterable[dict[str, Any]], merge: bool = False) -> None:
    """Insert or replace (`merge`: insert or merge) every row, one transaction per partition's
    hundred, a few at a time, within storage's deadline. Raises StorageUnavailable (some
    transactions may have been written: each is whole, and every row here is safe to write
    again)."""
    from azure.data.tables import UpdateMode

    options = {"mode": UpdateMode.MERGE if merge else UpdateMode.REPLACE}
    limit = asyncio.Semaphore(CONCURRENT)

    async def write(batch: list[dict[str, Any]]) -> None:
        operations = [("upsert", row, options) for row in batch]
        async with limit:
            await storage.on_table(table, lambda t: t.submit_transaction(operations))

    batches = transactions(rows)
    if batches:
        await storage.within_deadline(asyncio.gather(*(write(b) for b in batches)))
