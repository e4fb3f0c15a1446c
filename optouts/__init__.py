"""optouts: GET /api/optouts lists who opted out of the app's texts; POST /api/optouts/clear
clears one by hand, kept with who and why (function key required for both)."""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.records import optout_requests

    return await optout_requests.handle(req)
