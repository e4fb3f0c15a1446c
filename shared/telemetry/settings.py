"""Where the app's telemetry goes: APPLICATIONINSIGHTS_CONNECTION_STRING (unset: nowhere, and
nothing of OpenTelemetry is imported), and how the exporter signs in to Application Insights:
APPLICATIONINSIGHTS_AUTHENTICATION_STRING, `Authorization=AAD` with an optional
`ClientId=<the user-assigned identity's client id>` (Entra ID, as infra/app/functionapp.bicep
sets it for the Functions host too); unset, the connection string's instrumentation key alone.
"""

from __future__ import annotations

import re

from shared.common.settings import Reader, loader

TELEMETRY_SETTINGS = (
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
)

# The source only: `re` compiles it when an authentication string is set (docs/benchmark.md).
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class TelemetrySettings:
    """Application Insights, or None: telemetry off."""

    # Slotted, not a NamedTuple: on a webhook's first call (docs/benchmark.md, cold start).
    __slots__ = ("connection_string", "entra_client_id")

    def __init__(self, connection_string: str | None, entra_client_id: str | None) -> None:
        self.connection_string = connection_string
        # Entra ID sign-in for the exporter: None, the key alone; "" the system-assigned
        # identity; else the user-assigned identity's client id.
        self.entra_client_id = entra_client_id


def _pairs(value: str) -> dict[str, str] | None:
    """`Key=value;Key=value` (keys lower-cased), or None when a part has no `=`."""
    found: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(";"))):
        key, sep, item = part.partition("=")
        if not sep:
            return None
        found[key.strip().lower()] = item.strip()
    return found


def _telemetry_settings(reader: Reader) -> TelemetrySettings:
    connection = reader.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if connection is not None:
        parts = _pairs(connection)
        if parts is None or not (parts.get("instrumentationkey") or "").strip():
            reader.malformed(
                "APPLICATIONINSIGHTS_CONNECTION_STRING",
                "an Application Insights connection string (InstrumentationKey=...;"
                "IngestionEndpoint=...), as the resource's Overview page shows it",
            )
            connection = None
    client_id: str | None = None
    auth = reader.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    if auth is not None:
        parts = _pairs(auth)
        client = (parts or {}).get("clientid", "")
        if parts is None or parts.get("authorization") != "AAD" or (
            client and not re.fullmatch(_GUID, client)
        ):
            reader.malformed(
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
                "Authorization=AAD, with ClientId=(its client id) for a user-assigned identity",
            )
        else:
            client_id = client
    return TelemetrySettings(connection, client_id)


load_telemetry_settings = loader(TELEMETRY_SETTINGS, _telemetry_settings)
