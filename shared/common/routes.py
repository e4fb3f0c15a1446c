"""The app's URL paths, in one place: host.json's routePrefix and each function's route.

Signatures are checked against the route the function serves (never a path rebuilt from a
request header), and the URLs handed to Twilio are built from the same names. A test holds these
to host.json and every function.json.
"""

from __future__ import annotations

ROUTE_PREFIX = "api"

# Twilio's webhook connection overrides, on callback URLs (status, recording): retry twice when
# the app could not be reached or answered 5xx (a status callback answers 503 while storage is
# down). The fragment never reaches the app and Twilio leaves it out of the URL it signs, so the
# signature check is unchanged (docs: "Webhooks connection overrides").
CALLBACK_RETRIES = "#rc=2&rp=ct,5xx"


def path(route: str) -> str:
    """/api/<route>: where the Functions host serves the function whose route this is."""
    return f"/{ROUTE_PREFIX}/{route}"
