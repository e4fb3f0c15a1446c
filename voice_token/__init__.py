"""voice_token: GET /api/voice_token gives the console's softphone a Voice access token (an hour
at most) for its Device (function key required)."""

import azure.functions as func

from shared import telemetry


@telemetry.traced
async def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.browsercalls import token

    return await token.handle(req)
