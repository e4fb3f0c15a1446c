"""calls: GET /api/calls/{sid} reads one call's record and status events; GET /api/calls lists
the newest first, a page at a time (function key required for both)."""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.records import queries

    return await queries.handle(req, "call")
