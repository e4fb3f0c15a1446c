"""Counting the storage operations of a local host, for the broadcast benchmark (issue 26):
how many Table and Queue Storage requests the app makes per recipient, and how many the host's
queue listener makes besides.

A request hook on every storage client (azure-core's CustomHookPolicy, `raw_request_hook`: the
Tables SDK builds its pipeline without per-call policies) counts each request sent, a retry
included, as Azure bills it, labelled by who made it (the app's clients,
shared.records.storage; or the listener's, devhost.queues), the service and the kind: an entity
group transaction (`$batch`) is one request. `python -m devhost.server --count-storage FILE`
writes the running totals to FILE as JSON every half second, so a host killed with SIGKILL
leaves its count at most that far behind.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.core.pipeline import PipelineRequest

WRITE_INTERVAL = 0.5


def kind_of(method: str, url: str) -> str:
    """`table batch`, `table read TwilioOptOuts`, `table write TwilioRecords`, `queue put`,
    `queue receive`..."""
    path = url.split("?", 1)[0]
    if "/messages" in path:
        verbs = {"POST": "put", "GET": "receive", "DELETE": "delete", "PUT": "update"}
        return f"queue {verbs.get(method, method.lower())}"
    if path.endswith("$batch"):
        return "table batch"
    if path.rstrip("/").endswith("/Tables") or "/Tables(" in path:
        return "table create"
    table = path.rstrip("/").rsplit("/", 1)[-1].split("(", 1)[0]
    return f"table {'read' if method == 'GET' else 'write'} {table}"


class OperationCounter:
    """Operations by (who, kind), written to `path` while the host runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write_often, name="storage-ops",
                                        daemon=True)

    def hook(self, who: str) -> Callable[[PipelineRequest[Any]], None]:
        """A `raw_request_hook` that counts each request as `who`'s."""
        counts = self.counts

        def count(request: PipelineRequest[Any]) -> None:
            http = request.http_request
            counts[f"{who} {kind_of(http.method, http.url)}"] += 1

        return count

    def start(self) -> OperationCounter:
        self._thread.start()
        return self

    def write(self) -> None:
        spare = self.path.with_suffix(".partial")
        spare.write_text(json.dumps(dict(self.counts), sort_keys=True))
        spare.replace(self.path)

    def _write_often(self) -> None:
        while not self._stop.wait(WRITE_INTERVAL):
            self.write()

    def stop(self) -> None:
        self._stop.set()
        self.write()


def install(path: Path) -> OperationCounter:
    """Count every storage operation of this process from now on: the app's clients (built on
    first use with shared.records.storage's transport options) and the queue listener's."""
    from devhost import queues
    from shared.records import storage

    counter = OperationCounter(path).start()
    storage._TRANSPORT["raw_request_hook"] = counter.hook("app")  # dev-only: the counting
    queues.CLIENT_OPTIONS["raw_request_hook"] = counter.hook("host")
    return counter
