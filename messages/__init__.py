"""messages: GET /api/messages/{sid} reads one message's record and status events; GET
/api/messages lists the newest first, a page at a time (function key required for both)."""

import re

import azure.functions as func

from shared import telemetry

# SM for SMS, MM for MMS.
MESSAGE_SID = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.records import queries

    return await queries.handle(req, "message", MESSAGE_SID, "SM or MM followed by 32 hex digits")
