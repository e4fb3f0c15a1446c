"""How fast broadcasts send: BROADCAST_SENDS_PER_SECOND, the creates a second the whole account
may make for broadcasts, shared by every instance (shared.broadcasts.pace)."""

from __future__ import annotations

from typing import NamedTuple

from shared.common.settings import Reader, loader

BROADCAST_SETTINGS = ("BROADCAST_SENDS_PER_SECOND",)

MAX_SENDS_PER_SECOND = 1000.0


class BroadcastSettings(NamedTuple):
    """How fast broadcast_send may create calls and messages at Twilio, every instance together."""

    sends_per_second: float | None  # None: unpaced, as fast as the queue hands messages over


def _broadcast_settings(reader: Reader) -> BroadcastSettings:
    raw = reader.get("BROADCAST_SENDS_PER_SECOND")
    if raw is None:
        return BroadcastSettings(None)
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0 < rate <= MAX_SENDS_PER_SECOND:  # also refuses nan and inf
        reader.malformed(
            "BROADCAST_SENDS_PER_SECOND",
            f"a number of sends a second above 0 and at most {MAX_SENDS_PER_SECOND:g}",
        )
        return BroadcastSettings(None)
    return BroadcastSettings(rate)


load_broadcast_settings = loader(BROADCAST_SETTINGS, _broadcast_settings)
