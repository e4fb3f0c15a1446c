"""console: the console page (GET /api/console/), its script, styles and icon, from
console/static/. No key is needed to load them (they hold no data); every API the page reads or
acts through needs the Functions key (docs/console.md)."""

import azure.functions as func

from shared import telemetry


@telemetry.traced
def main(req: func.HttpRequest) -> func.HttpResponse:
    # Imported on first use, not at load (docs/benchmark.md, cold start).
    from shared.console import static

    return static.serve(req)
