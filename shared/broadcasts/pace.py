"""One pace for the whole account: BROADCAST_SENDS_PER_SECOND is what Twilio sees from every
instance of the app together, however many Flex Consumption runs.

Each instance that is sending holds a lease in table `TwilioBroadcastPace` (partition `leases`,
one row per instance: when it last renewed, and the rate it is using). Every REFRESH seconds it
reads the live leases (renewed within LEASE seconds) and takes

    its rate = min(account rate / live instances, account rate - the rates the others use)

so the instances share the account's rate evenly, and one that joins starts at what the others
have left (nothing, at first) instead of adding to them: the sum never exceeds the account's
rate, except for the slots an instance reserved before it learned of a newcomer (at most
MAX_PACING_WAIT seconds ahead). An instance that stops (idle, scaled in, killed) stops renewing,
and after LEASE seconds the others share its part. Within an instance, sends take evenly spaced
slots of its rate, kept HEADROOM under it (`Pacer`).

Cost: two storage operations per instance per REFRESH seconds (a query and an upsert), whatever
the rate; at 50 sends a second from two instances, 0.04 operations per send.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import time
import uuid
from typing import Any

from shared.broadcasts.settings import load_broadcast_settings
from shared.common import logs
from shared.records import storage

logger = logs.get_logger(__name__)

TABLE = "TwilioBroadcastPace"
PARTITION = "leases"
REFRESH = 2.0  # seconds between an instance's renewals
LEASE = 3 * REFRESH  # seconds a lease lasts without renewal
# A send waits at most this long for its slot; a longer wait is a deferral instead (the queue
# holds the message, not a function invocation).
MAX_PACING_WAIT = 2.0
JITTER = 1.0
# The share of its rate an instance spaces its slots at. A slot is taken just before its create
# leaves (`take_slot`), but the create reaches Twilio a little later or sooner (the event loop's
# wake-up, the connection), and a limit counted over any one-second window refuses the one
# create that lands early; each instance's stream can do so, so the overshoot grows with the
# instances. Two hosts at full speed against a 50/s limit: 2 % under the line, 1.4 % of creates
# refused (0.93x of the limit); 4 % under, 0.64 % (0.91x) (BENCHMARKS.md).
HEADROOM = 0.96
# This process's name on its lease: it is the instance (a worker process) that paces itself.
INSTANCE = uuid.uuid4().hex


class Paced(Exception):
    """No send slot of this instance's share of the pace came soon enough; nothing was sent.
    `after`: seconds until the message is worth trying again."""

    def __init__(self, reason: str, after: float) -> None:
        super().__init__(reason)
        self.after = after


class Pacer:
    """Evenly spaced send slots for this process: `rate` a second. `admit` lets a send in only
    while the next slot is free within its wait (MAX_PACING_WAIT at most); `take_slot` takes
    it. One event loop runs the worker's async functions, and nothing awaits between reading and
    taking a slot, so no lock is needed."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next = 0.0

    def free_in(self) -> float | None:
        """Seconds until the next slot is free (not taken), or None at no rate."""
        if self.rate <= 0:
            return None
        return max(0.0, self._next - time.monotonic())

    def reserve(self) -> float | None:
        """Take the next slot: seconds to wait for it, or None at no rate."""
        if self.rate <= 0:
            return None
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + 1.0 / self.rate
        return slot - now


class Share:
    """This instance's part of the account's rate, renewed from the leases every REFRESH s."""

    def __init__(self, account_rate: float) -> None:
        self.account_rate = account_rate
        self.pacer = Pacer(0.0)
        self.rate = 0.0  # this instance's part of the account's rate (the pacer's is under it)
        self.renew_at = 0.0  # monotonic time of the next renewal
        self._renewal: asyncio.Future[None] | None = None
        self.joined = False
        self.instances = 0

    async def renew(self) -> None:
        """Read the live leases, take this instance's rate, renew its lease. Raises
        StorageUnavailable (the share stays as it was)."""
        now = _now()
        if not self.joined:
            # Known to the others before counting them, so that two instances starting
            # together each see the other and share, instead of each taking the whole rate.
            await storage.on_table(TABLE, lambda t: t.upsert_entity(self._lease(now, 0.0)))
            self.joined = True
        since = now - datetime.timedelta(seconds=LEASE)

        async def live(t: Any) -> list[dict[str, Any]]:
            rows = t.query_entities("PartitionKey eq @p and SeenAt ge @since",
                                    parameters={"p": PARTITION, "since": since},
                                    select=["RowKey", "Rate"])
            return [dict(row) async for row in rows]

        leases = await storage.on_table(TABLE, live)
        others = [row for row in leases if row["RowKey"] != INSTANCE]
        used = sum(float(row.get("Rate") or 0.0) for row in others)
        rate = max(0.0, min(self.account_rate / (len(others) + 1), self.account_rate - used))
        await storage.on_table(TABLE, lambda t: t.upsert_entity(self._lease(now, rate)))
        if rate != self.rate or len(others) + 1 != self.instances:
            logger.info("broadcast_send pace instances=%d rate=%.2f of=%g", len(others) + 1,
                        rate, self.account_rate)
        self.rate, self.instances = rate, len(others) + 1
        self.pacer.rate = rate * HEADROOM

    def _lease(self, now: datetime.datetime, rate: float) -> dict[str, Any]:
        return {"PartitionKey": PARTITION, "RowKey": INSTANCE, "SeenAt": now, "Rate": rate}

    async def keep_fresh(self) -> None:
        """Renew when due: one send of the process renews, the others go on at the rate they
        have (or wait for the renewal, when the process has none yet). A failed renewal keeps
        the last rate, unless there is none yet (then it raises StorageUnavailable)."""
        if self._renewal is not None:
            if not self.instances:
                await asyncio.shield(self._renewal)
            return
        if time.monotonic() < self.renew_at:
            return
        self._renewal = asyncio.ensure_future(self._renew_or_keep())
        try:
            await self._renewal
        finally:
            self._renewal = None

    async def _renew_or_keep(self) -> None:
        try:
            await storage.within_deadline(self.renew())
            self.renew_at = time.monotonic() + REFRESH
        except storage.StorageUnavailable as error:
            self.renew_at = time.monotonic() + REFRESH / 4
            if not self.instances:
                raise
            logger.warning("broadcast_send pace outcome=not-renewed reason=%s", error)


_shares: dict[float, Share] = {}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def admit(max_wait: float = MAX_PACING_WAIT) -> None:
    """Return when this send may go ahead to its opt-out read and its claim: a slot of this
    instance's share is free within `max_wait` (not taken yet: `take_slot`, after the claim,
    takes it). Raises Paced, before anything is claimed or sent, when none is. Without
    BROADCAST_SENDS_PER_SECOND, at once."""
    share = await _fresh_share()
    if share is None:
        return
    if share.pacer.rate <= 0 < share.renew_at - time.monotonic() <= max_wait:
        # Joined while the others use the whole rate: they leave this instance its part at
        # their next renewal, which this one sees at its own.
        began = time.monotonic()
        await asyncio.sleep(share.renew_at - began)
        await share.keep_fresh()
        max_wait = max(0.0, max_wait - (time.monotonic() - began))
    free_in = share.pacer.free_in()
    if free_in is None or free_in > max_wait:
        raise Paced(
            f"this instance's share of BROADCAST_SENDS_PER_SECOND ({share.account_rate:g} for "
            f"the account, {share.pacer.rate:.2f} here) has no slot free within "
            f"{max_wait:.1f} s",
            MAX_PACING_WAIT + random.uniform(0, JITTER),  # noqa: S311 - spreading, not secret
        )


async def take_slot() -> None:
    """Called just before a create goes to Twilio, after its opt-out read and its claim: takes
    the next slot of this instance's share and waits for it, so the creates themselves leave
    evenly spaced at the instance's rate whatever time the claims and reads before them took.

    The slot is taken here, not before the claim: with one slot taken there and the creates
    spaced again here, two queues in a row at the same rate, a send delayed in the second
    left the first without a taker, and its slots were lost (one host sent 38 a second of 49;
    BENCHMARKS.md). `admit` made sure a slot was free within its wait, so this wait is that
    long, plus the slots other sends admitted meanwhile took. Raises Paced if the share fell
    to nothing since (a renewal that found the account's rate in use by others): the caller
    gives its claim back, and nothing was sent. Without BROADCAST_SENDS_PER_SECOND, at once."""
    share = await _fresh_share()
    if share is None:
        return
    wait = share.pacer.reserve()
    if wait is None:
        raise Paced("this instance's share of BROADCAST_SENDS_PER_SECOND fell to nothing",
                    MAX_PACING_WAIT + random.uniform(0, JITTER))  # noqa: S311 - not a secret
    if wait:
        await asyncio.sleep(wait)


async def _fresh_share() -> Share | None:
    """This process's share of the account's pace, renewed when due; None without
    BROADCAST_SENDS_PER_SECOND."""
    rate = load_broadcast_settings().sends_per_second
    if rate is None:
        return None
    share = _shares.setdefault(rate, Share(rate))
    await share.keep_fresh()
    return share
