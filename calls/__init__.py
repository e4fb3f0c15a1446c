"""calls: GET /api/calls/{sid} reads one call's record and status events; GET /api/calls lists
the newest first, a page at a time (function key required for both)."""

import re

import azure.functions as func

from shared import record_queries

CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")


async def main(req: func.HttpRequest) -> func.HttpResponse:
    sid = req.route_params.get("sid")
    if sid is None:
        return await record_queries.page(req, "call")
    return await record_queries.one("call", sid, CALL_SID, "CA followed by 32 hex digits")
