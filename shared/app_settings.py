"""Every setting the app reads, gathered from each capability's settings, for the tools that
must list or clear them (tests, benchmarks, the infrastructure checks). Not imported by the app's
functions."""

from __future__ import annotations

from shared.broadcasts.settings import BROADCAST_SETTINGS
from shared.browsercalls.settings import BROWSER_CALL_SETTINGS
from shared.common.settings import PLATFORM_SETTINGS, SECRET_SETTINGS
from shared.console.settings import CONSOLE_SETTINGS
from shared.messageflows.settings import MESSAGE_FLOW_SETTINGS
from shared.outbound.settings import CALL_SETTINGS, SMS_SETTINGS
from shared.records.settings import STORAGE_SETTINGS
from shared.telemetry.settings import TELEMETRY_SETTINGS
from shared.webhooks.settings import WEBHOOK_SETTINGS

__all__ = ["ALL_SETTINGS", "PLATFORM_SETTINGS", "SECRET_SETTINGS", "STORAGE_SETTINGS"]

ALL_SETTINGS = tuple(
    dict.fromkeys(WEBHOOK_SETTINGS + CALL_SETTINGS + SMS_SETTINGS + BROADCAST_SETTINGS
                  + MESSAGE_FLOW_SETTINGS + CONSOLE_SETTINGS + BROWSER_CALL_SETTINGS
                  + TELEMETRY_SETTINGS)
)
