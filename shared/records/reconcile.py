"""Reconciliation: Twilio's own lists of messages and calls, read back to fill in what the records
miss. It never sends anything.

What it fills in: a text that came in but was not stored (storage was down when sms_url answered;
an opt-out keyword among them is kept too, unless the person's later word is already kept), a
final status whose callback never came (Twilio gives up after its retries), and calls and texts
made outside the app (the console, another app on the account).

How it walks: per kind, a sweep covers everything Twilio dated (a message's date sent, a call's
start time) from its watermark minus LOOKBACK (statuses settle after the fact) up to the sweep's
own upper bound, newest first, a page at a time, within RUN_BUDGET seconds. A sweep that runs out
of time saves where it stopped and the next run carries on; only a finished sweep moves the
watermark, so the watermark never passes anything that was not stored. Every write is the same on
a second pass (records keyed by SID, events by their content), so a second run changes nothing.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from shared.common import logs, redact
from shared.common.text import small_count
from shared.records import optouts, storage, store

logger = logs.get_logger(__name__)

TABLE = "TwilioReconciliation"
PARTITION = "watermark"
# How far before the watermark a sweep looks again: a status may settle hours after the text or
# call began (a delivery receipt late from the carrier).
LOOKBACK = datetime.timedelta(hours=2)
# Twilio's clock against ours, and the time a just-made resource takes to be listed.
SKEW = datetime.timedelta(minutes=1)
# Seconds one run may take: inside host.json's 12 s functionTimeout, with time to save.
RUN_BUDGET = 8.0
PAGE_SIZE = 100

FINAL = {"message": frozenset({"delivered", "undelivered", "failed", "received", "read",
                               "canceled"}),
         "call": frozenset({"completed", "busy", "no-answer", "canceled", "failed"})}


class Sweep(NamedTuple):
    """Where a kind's reconciliation stands: everything dated before `since` was reconciled; the
    sweep in progress covers up to `upper` and has done everything dated from `resume` on."""

    since: datetime.datetime
    upper: datetime.datetime | None
    resume: datetime.datetime | None


class Tally(NamedTuple):
    kind: str
    seen: int
    filled: int
    finished: bool


def _clock() -> float:
    """Seconds, for the run's budget (tests replace it)."""
    return time.monotonic()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _parse(value: object) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if isinstance(value, str) and value:
        try:
            return _parse(datetime.datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


async def _read_sweep(kind: str) -> Sweep | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        row = await storage.on_table(TABLE, lambda t: t.get_entity(PARTITION, kind))
    except ResourceNotFoundError:
        return None
    since = _parse(row.get("Since"))
    if since is None:
        return None
    return Sweep(since, _parse(row.get("Upper")), _parse(row.get("Resume")))


async def _save_sweep(kind: str, sweep: Sweep) -> None:
    row = {"PartitionKey": PARTITION, "RowKey": kind, "Since": sweep.since.isoformat(),
           "Upper": sweep.upper.isoformat() if sweep.upper else "",
           "Resume": sweep.resume.isoformat() if sweep.resume else ""}
    await storage.on_table(TABLE, lambda t: t.upsert_entity(row))


class Unlisted(Exception):
    """Twilio's lists could not be read: a sentence saying why (Twilio's status and error code,
    or the kind of network failure; never its answer's body, which a library's own error text
    quotes, nor a credential)."""


async def scheduled() -> None:
    """The timer's run: one line either way. A failure is logged at ERROR with its reason and
    the next run (15 minutes later) starts from the same watermark, so nothing is skipped; it
    is not raised, which would put a traceback in the host's log, so the invocation does not
    count as failed: the ERROR line is the signal (one listing every 15 minutes is too few for
    the Twilio error-rate alert)."""
    from shared.common.settings import SettingsError

    try:
        await run()
    except Unlisted as error:
        logger.error("reconcile outcome=failed reason=%s", error)
    except SettingsError as error:
        logger.error("reconcile outcome=failed reason=settings: %s", error.describe())
    except storage.StorageUnavailable as error:
        logger.error("reconcile outcome=failed reason=%s", error)


async def run(budget: float = RUN_BUDGET) -> list[Tally]:
    """One reconciliation run, messages then calls, within `budget` seconds. Raises
    SettingsError (no credentials), StorageUnavailable (nothing to reconcile into) or Unlisted
    (Twilio refused the listing or could not be reached)."""
    import aiohttp
    from twilio.base.exceptions import TwilioException

    from shared.outbound import twilio_client
    from shared.outbound.settings import load_rest_settings

    rest = load_rest_settings()
    client = twilio_client.get_client(rest)
    deadline = _clock() + budget
    tallies = []
    try:
        for kind, listing in (("message", client.messages), ("call", client.calls)):
            tallies.append(await _sweep(kind, listing, deadline, rest.http_timeout))
    except TwilioException as error:
        raise Unlisted(_refusal(error)) from None
    except (aiohttp.ClientError, OSError) as error:  # TimeoutError is an OSError
        raise Unlisted(f"Twilio's API could not be reached ({type(error).__name__})") from None
    for tally in tallies:
        logger.info("reconcile kind=%s seen=%d filled=%d outcome=%s", tally.kind, tally.seen,
                    tally.filled, "done" if tally.finished else "to-be-continued")
    return tallies


def _refusal(error: Exception) -> str:
    """What Twilio answered a listing: twilio raises TwilioRestException (status, code) for
    some failures and TwilioException("Unable to fetch page", response) for a list's page."""
    import json

    status, code = getattr(error, "status", None), getattr(error, "code", None)
    response = error.args[1] if len(error.args) > 1 else None
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
        try:
            code = json.loads(getattr(response, "text", "") or "{}").get("code")
        except (ValueError, AttributeError):
            code = None
    if status is None:
        return f"Twilio's answer could not be read ({type(error).__name__})"
    answered = f"HTTP {status}" + (f", code {code}" if isinstance(code, int) else "")
    if status in (401, 403, 404):
        return f"Twilio refused the listing ({answered}): check TWILIO_ACCOUNT_SID and its " \
               "credentials"
    return f"Twilio failed the listing ({answered})"


async def _sweep(kind: str, listing: Any, deadline: float, timeout: float) -> Tally:
    import asyncio

    now = _now()
    sweep = await _read_sweep(kind) or Sweep(now - LOOKBACK, None, None)
    upper = sweep.upper or now - SKEW
    before = sweep.resume or upper
    after = sweep.since - LOOKBACK
    # Only a lower bound is asked of Twilio (its date filters may round to the day); the upper
    # one is applied here, to the newest-first listing.
    options = ({"date_sent_after": after} if kind == "message" else {"start_time_after": after})
    seen = filled = 0
    page = await asyncio.wait_for(listing.page_async(page_size=PAGE_SIZE, **options), timeout)
    while page is not None:
        for item in page:
            dated = _parse(item.date_sent if kind == "message" else item.start_time)
            if dated is None or dated > before:
                continue  # done earlier in this sweep (or not dated yet: the next sweep)
            if _clock() > deadline:
                await _save_sweep(kind, Sweep(sweep.since, upper,
                                              dated + datetime.timedelta(seconds=1)))
                return Tally(kind, seen, filled, finished=False)
            seen += 1
            filled += await FILL[kind](item)
        if _clock() > deadline:
            await _save_sweep(kind, Sweep(sweep.since, upper, sweep.resume))
            return Tally(kind, seen, filled, finished=False)
        page = await asyncio.wait_for(page.next_page_async(), timeout)
    await _save_sweep(kind, Sweep(upper, None, None))
    return Tally(kind, seen, filled, finished=True)


async def _fill(kind: str, sid: str, record_it: Callable[[], Awaitable[bool]], status: str | None,
                params: dict[str, str]) -> int:
    """A record for a SID the app never saw (`record_it`), and a final status its callbacks
    never brought; how many of the two were filled in."""
    filled = 0
    record = await store.read(kind, sid)
    if record is None:
        filled += await record_it()
        record = await store.read(kind, sid)
    elif record["to"] is None or record["from"] is None:
        # Recorded first by a callback that did not say (a voicemail's recording, before the
        # call's own callbacks): the numbers as Twilio lists them.
        filled += await store.complete(sid, record, {name: params.get(name) for name in
                                                     ("To", "From", "Direction")})
    if status in FINAL[kind] and (record is None or record["status"] != status):
        filled += await store.event(kind, sid, params)
    return filled


async def _fill_message(message: Any) -> int:
    from shared.messageflows import keywords

    sid = message.sid or ""
    inbound = (message.direction or "") == "inbound"
    meaning = keywords.meaning(message.body) if inbound else None
    word = keywords.normalise(message.body or "") if meaning else None
    media = small_count(message.num_media, 3) or 0

    async def record_it() -> bool:
        # At Twilio's creation time, not this run's: the newest-first lists keep their order.
        if inbound:
            return await store.inbound(sid, message.to, message.from_, message.body, [], word,
                                       0, num_media=media, source="reconcile",
                                       created=message.date_created)
        return await store.found_elsewhere("message", sid, message.to, message.from_,
                                           message.direction or "", message.body,
                                           message.date_created)

    params = {"MessageStatus": message.status, "To": message.to or "",
              "From": message.from_ or "", "Direction": message.direction or ""}
    if message.error_code:
        params["ErrorCode"] = str(message.error_code)
    filled = await _fill("message", sid, record_it, message.status, params)
    if meaning in (keywords.OPTED_OUT, keywords.OPTED_IN):
        # Whether or not the text was recorded, its word may be what storage lost.
        filled += await _keep_late(message, (message.to, message.messaging_service_sid),
                                   message.from_, meaning == keywords.OPTED_OUT,
                                   f"keyword {word}")
    elif not inbound and str(message.error_code or "") == str(optouts.TWILIO_OPTED_OUT):
        # Twilio refused a text the app sent (21610: it knows of an opt-out), and the status
        # callback that would have kept it never came.
        filled += await _keep_late(message, (message.messaging_service_sid, message.from_),
                                   message.to, True, "twilio 21610")
    return filled


async def _keep_late(message: Any, senders: tuple[str | None, ...], person: str | None,
                     opted_out: bool, how: str) -> int:
    """A person's word (a keyword they texted, or Twilio's 21610 for them), kept under each
    sender it is about (the number, its Messaging Service) unless a later word of theirs is kept
    there: whether or not the app saw the text, its opt-out may be what storage lost."""
    filled = 0
    for sender in dict.fromkeys(senders):
        if not sender:
            continue
        known = await optouts.read(sender, person)
        sent = _parse(message.date_sent)
        if known is not None and (
            known.opted_out == opted_out
            or sent is None
            or (_parse(known.changed_at) or sent) >= sent
        ):
            continue
        if await optouts.set_opted_out(sender, person, opted_out, f"{how} (reconciled)",
                                       message.sid):
            filled += 1
            logger.warning("reconcile MessageSid=%s person=%s outcome=%s-kept-late",
                           redact.sid(message.sid), redact.phone_number(person or ""),
                           "opt-out" if opted_out else "opt-in")
    return filled


async def _fill_call(call: Any) -> int:
    sid = call.sid or ""

    async def record_it() -> bool:
        return await store.found_elsewhere("call", sid, call.to, call._from,
                                           call.direction or "", None, call.date_created)

    params = {"CallStatus": call.status, "To": call.to or "", "From": call._from or "",
              "Direction": call.direction or ""}
    if call.duration:
        params["CallDuration"] = str(call.duration)
    return await _fill("call", sid, record_it, call.status, params)


FILL: dict[str, Callable[[Any], Awaitable[int]]] = {"message": _fill_message, "call": _fill_call}
