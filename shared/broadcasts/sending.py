"""What broadcast_send does with one queue message: send it once, through the same code as
send_sms and make_call, and record where it ended.

The idempotency key (broadcast id, recipient) is claimed as for an Idempotency-Key header, so a
message the queue delivers twice (a redelivery after a crash, a chunk delivered twice) still
reaches Twilio once. What cannot be settled now raises `TryAgain` with how long to wait:
Twilio's rate limit (its Retry-After, about a second), a key still in flight (a few seconds),
an unknown outcome (until the key's in-flight time has passed, when a retry looks the outcome up
at Twilio). broadcast_send then puts the message back on the queue that much later, so waiting
does not use up the tries maxDequeueCount allows; those are kept for failures.

BROADCAST_SENDS_PER_SECOND paces the creates of every instance together (shared.broadcasts.pace),
so a broadcast runs at the rate the account allows instead of into 429s, however many instances
Flex Consumption runs. A send's own storage operations are its key's claim and its record; the
rest of its rows are written with its chunk's (shared.broadcasts.settlement), and its opt-out is
read with its neighbours' (`Screening`): docs/broadcasts.md counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import random
import time
from typing import Any

import azure.functions as func

from shared import telemetry
from shared.broadcasts import delivery, model, pace, queue, table
from shared.broadcasts.settlement import Settlement
from shared.common import logs, redact, responses
from shared.outbound import answers, calls, sms
from shared.outbound.settings import load_call_settings, load_sms_settings
from shared.records import idempotency, optouts, storage
from shared.records.optouts import TWILIO_OPTED_OUT

logger = logs.get_logger(__name__)

RETRY_STATUSES = frozenset({409, 500, 502, 503, 504})
# Deferrals one recipient may take (each a second or more; an unknown outcome takes about ten
# before its key is released): beyond them, the queue's own tries and the poison queue decide.
MAX_DEFERRALS = 50
# Seconds before the next try, by what the answer was: a key in flight; an unknown outcome
# (Twilio 5xx, timeout, unreachable: the next try looks it up once the key's in-flight time
# has passed); anything else without a Retry-After.
IN_FLIGHT_WAIT = 5.0
UNKNOWN_OUTCOME_WAIT = idempotency.IN_FLIGHT.total_seconds() + 1
DEFAULT_WAIT = 5.0
JITTER = 1.0  # up to a second more, so messages deferred together do not come back together
MAX_PACING_WAIT = pace.MAX_PACING_WAIT
# Seconds a chunk's invocation starts new sends for: the last one (Twilio's answer, the records)
# still ends inside host.json's 12 s functionTimeout unless Twilio itself hangs, and a timed-out
# invocation is safe too (its chunk comes back; each recipient's key prevents a second send).
CHUNK_BUDGET = 5.0
# Up to this share of it less, drawn per invocation: chunks taken up together end apart, so the
# queue hands over the next ones while the others still send (it fetches a new batch only when
# its running invocations fall to newBatchThreshold), instead of the instance pausing between
# rounds of chunks.
CHUNK_BUDGET_SPREAD = 0.3


class TryAgain(Exception):
    """The message could not be settled now: try it again `after` seconds from now. `why`: a
    token for the deferral's metric (in-flight, unknown-outcome, rate-limited, unavailable)."""

    def __init__(self, reason: str, after: float = DEFAULT_WAIT, why: str = "rate-limited"
                 ) -> None:
        super().__init__(reason)
        self.after = after
        self.why = why


# No slot of the account's pace came soon enough (shared.broadcasts.pace): nothing was sent.
Paced = pace.Paced
WAITS = (TryAgain, Paced)


class Screening:
    """The opt-outs of a chunk's recipients, read just ahead of their sends: one query for the
    next AMONG_PER_QUERY recipients not read in the last FRESH seconds, instead of a point read
    each (shared.records.optouts.opted_out_among). So a text goes out at most FRESH seconds
    after its recipient's opt-out was read (a send_sms reads it just before sending)."""

    FRESH = 5.0

    def __init__(self, upcoming: list[str]) -> None:
        self.upcoming = upcoming
        self._read: dict[str, tuple[float, bool]] = {}  # person: (monotonic time read, opted out)

    async def opted_out(self, sender: optouts.Senders, to: str) -> bool:
        now = time.monotonic()
        found = self._read.get(to)
        if found is None or now - found[0] > self.FRESH:
            ahead = self.upcoming[self.upcoming.index(to):] if to in self.upcoming else [to]
            due = [p for p in ahead
                   if p not in self._read or now - self._read[p][0] > self.FRESH]
            batch = due[: optouts.AMONG_PER_QUERY]
            opted = await storage.within_deadline(optouts.opted_out_among(sender, batch))
            for person in batch:
                self._read[person] = (now, person in opted)
            found = self._read[to]
        if found[1]:
            logger.warning("broadcast_send to=%s outcome=refused reason=opted-out",
                           redact.phone_number(to))
        return found[1]


class Claiming:
    """The keys of a chunk's next recipients, claimed GROUP at a time in one transaction
    (shared.records.idempotency.claim_many) just before the first of them is sent, instead of
    one conditional insert each. When a key of the group exists already (the chunk came again:
    a redelivery, a copy) nothing of the group is claimed: the recipients that settled before
    are skipped (their rows, one query: table.settled) and each of the others is claimed alone,
    which decides it (in flight, an unknown outcome looked up, taken over). Claims whose sends
    did not happen (out of time, opted out meanwhile) are given back (`release`) before the
    rest of the chunk goes back on the queue.

    A key lasts a day (idempotency.TTL), a queue message up to a week, and an operator may put
    a poison message back later still: a chunk of a broadcast older than its keys' day reads
    its rows before its first claim, whatever the keys say (`_keys_may_be_gone`), or it would
    send everyone again. A younger one skips that query: none of its keys can have expired,
    and on the emulator the query costs a scan of the whole table."""

    GROUP = 8

    def __init__(self, tasks: list[model.Task], screening: Screening) -> None:
        self.tasks = tasks
        self.screening = screening
        self.ahead: dict[str, idempotency.Claim] = {}
        self.tried: set[str] = set()  # claimed with a group, or to be claimed alone
        self.settled: dict[str, str] | None = None  # read once needed

    async def claim(self, task: model.Task, function: str, settings: Any
                    ) -> idempotency.Claim | str | None:
        """The recipient's claim, taken now with the next recipients' or before with an earlier
        one's; the state it settled in before (a string: this chunk came again); None to claim
        it alone."""
        if task.to in self.ahead:
            return self.ahead.pop(task.to)
        start = self.tasks.index(task)
        if self.settled is None and _keys_may_be_gone(task.broadcast):
            self.settled = await table.settled(task.broadcast, [t.to for t in self.tasks[start:]])
        if self.settled is not None and task.to in self.settled:
            return self.settled[task.to]
        if task.to in self.tried:
            return None
        group: list[tuple[model.Task, idempotency.Wanted]] = []
        for other in self.tasks[start : start + self.GROUP]:
            if other.to in self.tried:
                break
            if self.settled is not None and other.to in self.settled:
                continue
            request, refusal = _parse(other, settings)
            if refusal is not None:
                continue
            if other is not task and task.kind == "sms" and await self.screening.opted_out(
                    _sender(request), other.to):
                continue
            self.tried.add(other.to)
            group.append((other, idempotency.Wanted(other.idempotency_key, other.fingerprint,
                                                    request.to, request.from_)))
        claims = await idempotency.claim_many(function, [wanted for _, wanted in group])
        if claims is None:
            # A key of the group is taken: this chunk (or a copy) ran before. Its settled
            # recipients are skipped; the others are claimed alone, which decides each.
            self.settled = await table.settled(task.broadcast, [t.to for t in self.tasks[start:]])
            return self.settled.get(task.to)
        self.ahead = {t.to: claim for (t, _), claim in zip(group, claims, strict=True)}
        return self.ahead.pop(task.to)

    async def release_unused(self) -> None:
        unused, self.ahead = list(self.ahead.values()), {}
        await idempotency.release(unused)


# Clocks of instances differ a little: a broadcast this close to its keys' day counts as older.
KEY_CLOCK_SKEW = datetime.timedelta(minutes=10)


def _keys_may_be_gone(broadcast: str) -> bool:
    """Whether some of this broadcast's keys may have expired: every key is claimed after the
    broadcast starts and lasts idempotency.TTL from its claim, so not before that long after."""
    return idempotency.now() - model.created_at(broadcast) >= idempotency.TTL - KEY_CLOCK_SKEW


async def deliver(task: model.Task, settlement: Settlement | None = None,
                  screening: Screening | None = None, max_wait: float = MAX_PACING_WAIT,
                  claiming: Claiming | None = None) -> str:
    """Send one recipient's text or call; the state it ended in (sent, failed, refused), with its
    rows left in `settlement` to be written with the chunk's (without one, written before this
    returns). `screening`: the chunk's opt-out reads (one made for this recipient alone without
    it). Raises TryAgain or Paced (no send slot came within `max_wait`), and anything storage
    raises, for the message to be tried again."""
    if settlement is None:
        alone = Settlement(task.broadcast)
        state = await deliver(task, alone, screening, max_wait, claiming)
        await alone.write()
        return state
    waiting: Exception | None = None
    # One span per recipient (telemetry on), linked to the request that queued the broadcast;
    # the Twilio request is its child, and the status callbacks link back to it.
    with telemetry.broadcast_message(task.broadcast, task.kind, task.traceparent):
        settled = len(settlement.recipients)
        try:
            state = await _deliver(task, settlement, screening, max_wait, claiming)
        except WAITS as error:  # a deferral, not a failure of the span
            waiting = error
    if waiting is not None:
        raise waiting
    if len(settlement.recipients) > settled:  # settled now, not found settled before
        telemetry.count_broadcast_send(state, task.kind)
    return state


def _kind(task: model.Task) -> tuple[str, Any]:
    """The recipient keys' function name and the settings of the task's kind."""
    if task.kind == "sms":
        return "broadcast_sms", load_sms_settings()
    return "broadcast_call", load_call_settings()


def _lookup(task: model.Task, settings: Any, request: Any) -> idempotency.Lookup:
    """What Twilio's list says about a recipient's create whose outcome is unknown: a 201 with
    the call or message found (adopted for the key), or None."""
    async def lookup(
        to: str, from_: str | None, since: datetime.datetime, owner: str
    ) -> func.HttpResponse | None:
        wanted = dataclasses.replace(request, to=to, from_=from_)
        if task.kind == "sms":
            message = await sms.find(settings, wanted, since, owner)
            return None if message is None else _created(sms.answer(message, True))
        call = await calls.find(settings, wanted, since, owner)
        return None if call is None else _created(calls.answer(call, True))

    return lookup


async def _deliver(task: model.Task, settlement: Settlement, screening: Screening | None,
                   max_wait: float, claiming: Claiming | None) -> str:
    function, settings = _kind(task)
    request, refusal = _parse(task, settings)
    if refusal is not None:  # the policy's answer does not change between tries: not kept
        return _settle(task, refusal, settlement)
    lookup = _lookup(task, settings, request)
    await pace.admit(max_wait)  # raises Paced: nothing claimed, nothing sent
    if task.kind == "sms":
        # Opted out since the broadcast was accepted: skipped, as refused. Storage failing
        # raises: the message is tried again, never sent unchecked.
        screening = screening or Screening([task.to])
        if await _opted_out(screening, request, task, settlement):
            return "refused"
    else:
        screening = None  # calls: no opt-outs
    # Claimed straight into "sending" (one write, not two: the request is known already), with
    # the chunk's next recipients when it can (`Claiming`), else alone.
    held: idempotency.Claim | func.HttpResponse | str | None = None
    if claiming is not None:
        held = await claiming.claim(task, function, settings)
    else:  # a recipient's own message (deferred): settled by an earlier copy already?
        held = (await table.settled(task.broadcast, [task.to])).get(task.to)
    if isinstance(held, str):
        return held  # settled before (the message came again): nothing more to do
    if held is None:
        held = await idempotency.claim(
            function, task.idempotency_key, task.fingerprint, lookup,
            sending=(request.to, request.from_),
        )
    if isinstance(held, idempotency.Claim):
        try:
            await pace.take_slot()  # the create leaves at its slot of the pace
            # The wait may have aged the opt-out's read past Screening.FRESH: then read again.
            if screening is not None and await _opted_out(screening, request, task, settlement):
                await idempotency.release([held])
                return "refused"
        except Paced:
            await idempotency.release([held])  # nothing was sent: free for the next try
            raise
        response = await _send(task, settings, request, held.owner, settlement.index)
        # No `done` row for the key: the recipient's row (sent, failed) is the answer a later
        # copy of the message finds (table.settled). The key stays `sending` until it expires,
        # so a copy that misses the row (written with the chunk's) looks the outcome up.
        await held.settle(response)
    else:
        response = held
    return _settle(task, response, settlement)


async def _opted_out(screening: Screening, request: Any, task: model.Task,
                     settlement: Settlement) -> bool:
    """The recipient opted out (read at most Screening.FRESH seconds ago): marked refused."""
    if not await screening.opted_out(_sender(request), task.to):
        return False
    settlement.mark(task.to, "refused", error=optouts.refusal(task.to))
    return True


def _created(body: dict[str, object]) -> func.HttpResponse:
    return responses.json_body(body, 201)


def _sender(request: Any) -> tuple[str, ...]:
    """Whose opt-outs decide a text of the broadcast (shared.outbound.sms.opt_out_senders)."""
    from shared.outbound import sms

    return sms.opt_out_senders(request.from_, request.messaging_service_sid)


def _parse(task: model.Task, settings: Any) -> tuple[Any, func.HttpResponse | None]:
    """The task as send_sms or make_call reads a request: (request, None), or (None, the
    refusal they would answer)."""
    function = "send_sms" if task.kind == "sms" else "make_call"
    try:
        if task.kind == "sms":
            fields: dict[str, str | list[str]] = {"to": task.to, "body": task.text or "",
                                                  **_from(task)}
            if task.media_urls:
                fields["media_url"] = list(task.media_urls)
            return sms.parse(fields, settings), None
        fields = {"to": task.to, **_from(task)}
        if task.text:
            fields["message"] = task.text
        return calls.parse(fields, settings), None
    except answers.REFUSALS as refusal:
        return None, answers.refused(function, refusal)


async def _send(
    task: model.Task, settings: Any, request: Any, owner: str, index_into: list[dict[str, Any]]
) -> func.HttpResponse:
    subject = sms.SUBJECT if task.kind == "sms" else calls.SUBJECT
    # The status callbacks say which broadcast they belong to: its delivery counts follow them
    # (shared.broadcasts.delivery).
    query = f"?{delivery.QUERY}={task.broadcast}"
    try:
        if task.kind == "sms":
            created: Any = await sms.send(request, settings, query)
        else:
            created = await calls.place(request, settings, query)
    except Exception as error:  # every failure becomes an answer, as for a single send
        return answers.twilio_failure(error, subject, request.to, settings.rest.http_timeout)
    # The record now (the status callbacks find it); its index row with the chunk's.
    if task.kind == "sms":
        recorded = await sms.record(created, request, owner, index_into)
        return _created(sms.answer(created, recorded))
    recorded = await calls.record(created, request.message, owner, index_into)
    return _created(calls.answer(created, recorded))


def _from(task: model.Task) -> dict[str, str]:
    return {"from": task.from_} if task.from_ else {}


def _settle(task: model.Task, response: func.HttpResponse, settlement: Settlement) -> str:
    """The state an answer puts the recipient in, marked in `settlement`; raises TryAgain for
    an answer that settles nothing (a 409, a 429, a 5xx)."""
    body = json.loads(response.get_body() or b"{}")
    if response.status_code == 201:
        settlement.mark(task.to, "sent", sid=str(body.get("sid") or ""))
        return "sent"
    if response.status_code in RETRY_STATUSES:
        raise TryAgain(f"HTTP {response.status_code}: {body.get('error', '')}", _wait(response),
                       _why(response.status_code, body))
    code = body.get("twilio_code")
    error = body.get("error") or f"HTTP {response.status_code}"
    # Twilio's 21610: the recipient opted out (now kept: shared.outbound.sms): refused, like the
    # opted-out recipients the app knew of itself.
    state = "refused" if code == TWILIO_OPTED_OUT else "failed"
    settlement.mark(task.to, state, error=f"{code}: {error}" if code else error)
    return state


async def deliver_chunk(chunk: model.Chunk) -> dict[str, int]:
    """Send a chunk's recipients one after the other for at most CHUNK_BUDGET seconds, then put
    the rest back as a smaller chunk; how many ended sent, failed, deferred and put back.

    One at a time per chunk: the queue runs newBatchThreshold to batchSize + newBatchThreshold
    chunks at once (host.json: 8 to 16), the instance's concurrency, and the account's pace
    (shared.broadcasts.pace) sets its rate. Each chunk waits for its slots in turn, so the
    pace is kept busy only while enough chunks run to cover a send's own time (its create at
    Twilio, its record): with at most 4, one host left a 50/s pace idle 12 % of the time, with
    at least 8 some 3 % (BENCHMARKS.md). A recipient that must wait gets its own deferred
    message, so the rest of the chunk does not wait with it. The chunk's rows are written
    together at the end (shared.broadcasts.settlement), before the rest is put back. Storage
    failing raises (the queue delivers the chunk again; the recipients already settled
    replay, not resend)."""
    began = time.monotonic()
    budget = CHUNK_BUDGET * (1 - random.uniform(0, CHUNK_BUDGET_SPREAD))  # noqa: S311
    tally = dict.fromkeys(("sent", "failed", "refused", "deferred", "put back"), 0)
    tasks = chunk.tasks()
    settlement = Settlement(chunk.broadcast.id)
    screening = Screening([t.to for t in tasks])
    claiming = Claiming(tasks, screening)
    try:
        for index, task in enumerate(tasks):
            left = budget - (time.monotonic() - began)
            try:
                if left <= 0:
                    raise Paced("out of time", 0)
                tally[await deliver(task, settlement, screening,
                                    max_wait=min(left, MAX_PACING_WAIT), claiming=claiming)] += 1
            except Paced:
                rest = chunk.rest([t.to for t in tasks[index:]])
                await settlement.write()  # before the rest goes back: what is done is seen
                await claiming.release_unused()  # and free to be claimed by the next copy
                await queue.put_back(rest)
                tally["put back"] = len(rest.recipients)
                break
            except TryAgain as error:
                await queue.defer(task, error.after)
                _deferred(error)
                tally["deferred"] += 1
        await settlement.write()
        await claiming.release_unused()
    except BaseException:
        # Storage failed (or the invocation was cancelled) part way: keep what was settled if
        # storage takes it; if not, those recipients' keys stay `sending` and the next copy of
        # the chunk looks them up.
        with contextlib.suppress(Exception):
            await settlement.write()
        with contextlib.suppress(Exception):
            await claiming.release_unused()
        raise
    return tally


def _wait(response: func.HttpResponse) -> float:
    """Seconds until the next try of an answer that settles nothing."""
    status = response.status_code
    if status == 409:  # in flight; longer when the key waits to be released (its Retry-After)
        wait = max(IN_FLIGHT_WAIT, _retry_after(response))
    elif status in (500, 502, 504):
        wait = UNKNOWN_OUTCOME_WAIT
    else:
        wait = _retry_after(response) or DEFAULT_WAIT
    return wait + random.uniform(0, JITTER)  # noqa: S311 - spreading retries, not a secret


def _why(status: int, body: dict[str, Any]) -> str:
    """The deferral's reason, as the metric names it, for an answer that settles nothing."""
    if status == 409:
        return "in-flight"
    if status == 503:
        # Twilio's 429 comes back as a 503 with Twilio's code (shared.outbound.answers); a 503
        # without one is the app's own: Twilio could not be connected to, storage failed, or
        # the lookup after an unknown outcome could not be made.
        return "rate-limited" if "twilio_code" in body else "unavailable"
    return "unknown-outcome"


def _deferred(error: Exception) -> None:
    """Count a deferral (shared.telemetry: names.DEFERRALS) by why."""
    telemetry.count_deferral(error.why if isinstance(error, TryAgain) else "paced")


def _retry_after(response: func.HttpResponse) -> float:
    try:
        return float(response.headers.get("Retry-After") or 0)
    except ValueError:
        return 0.0


async def handle(message_id: str, body: bytes, dequeue_count: int,
                 inserted: datetime.datetime | None = None) -> None:
    """broadcast_send: one `broadcast-sends` message, a chunk or one recipient; `inserted`:
    when it was put on the queue (its age goes to names.QUEUE_AGE).

    A message that is not one of ours (it does not parse, names no recorded broadcast, or its
    recipients' tags do not verify) is logged with its id and dropped: trying it again could
    not change that. A recipient that must wait is deferred, up to MAX_DEFERRALS times, then
    raises, as storage failing does: the queue tries the message again, and after
    maxDequeueCount tries moves it to the poison queue."""
    if inserted is not None:
        age = datetime.datetime.now(datetime.UTC) - (
            inserted if inserted.tzinfo else inserted.replace(tzinfo=datetime.UTC))
        telemetry.observe_queue_age(age.total_seconds())
    try:
        envelope = model.read_message(body)
    except model.BadMessage as error:
        logger.error("broadcast_send message=%s outcome=dropped reason=%s", message_id, error)
        return
    try:
        await _handle(envelope, message_id, dequeue_count)
    except storage.StorageRefused as error:
        # Storage will never take what this message needs written: retrying cannot help.
        logger.error("broadcast_send message=%s id=%s outcome=dropped reason=%s", message_id,
                     envelope.broadcast, error)


async def _handle(envelope: model.Envelope, message_id: str, dequeue_count: int) -> None:
    broadcast, verified = await table.open_message(envelope, "broadcast_send", message_id)
    if broadcast is None or not verified:
        return
    if envelope.is_chunk:
        tally = await deliver_chunk(broadcast.chunk(verified, envelope.traceparent))
        logger.info(
            "broadcast_send id=%s outcome=chunk %s",
            broadcast.id,
            " ".join(f"{state.replace(' ', '-')}={n}" for state, n in tally.items()),
        )
        return
    task = broadcast.task(verified[0], envelope.deferrals, envelope.traceparent)
    settlement = Settlement(task.broadcast)
    try:
        outcome = await deliver(task, settlement)
        await settlement.write()
    except WAITS as error:
        if task.deferrals >= MAX_DEFERRALS:
            logger.warning(
                "broadcast_send id=%s to=%s outcome=retry try=%s deferrals=%d reason=%s",
                task.broadcast, redact.phone_number(task.to), dequeue_count, task.deferrals,
                error,
            )
            raise
        await queue.defer(task, error.after)  # if this fails, the queue tries it again
        _deferred(error)
        logger.info(
            "broadcast_send id=%s to=%s outcome=deferred after=%.1fs reason=%s",
            task.broadcast, redact.phone_number(task.to), error.after, error,
        )
        return
    logger.debug("broadcast_send id=%s outcome=%s", task.broadcast, outcome)


# Tries of the poison queue's message before broadcast_poison stops retrying a storage failure
# and drops it with an ERROR (the poison queue has no poison queue of its own).
POISON_TRIES = 5


# Why a recipient whose create went out, and whose outcome nobody could learn, is given up on:
# not the plain reason, so that nobody sends it again without looking at Twilio first.
UNKNOWN_OUTCOME = ("its queue message failed every try, after a create whose outcome is unknown "
                   "(Twilio could not be asked, or did not list it yet): look it up in Twilio's "
                   "logs before sending again")


async def _found_sent(task: model.Task, settlement: Settlement) -> str | None:
    """Before a recipient is given up on: when its key says a create went out with no answer
    kept (the tries failed on storage after Twilio made the call or text), ask Twilio's list as
    a retry would: "sent" (marked in `settlement`) when it is there, "unknown" when Twilio could
    not say (it failed, or the create is too recent to be listed for sure), None otherwise."""
    try:
        function, settings = _kind(task)
        sending = await idempotency.unknown_outcome(function, task.idempotency_key)
        if sending is None:
            return None
        request, refusal = _parse(task, settings)
        if refusal is not None:
            return None
        answer = await _lookup(task, settings, request)(*sending)
    except storage.StorageUnavailable:
        raise
    except Exception as error:  # Twilio unreachable or refusing, a setting: still unknown
        logger.error("broadcast_poison id=%s to=%s outcome=not-looked-up reason=%s",
                     task.broadcast, redact.phone_number(task.to), type(error).__name__)
        return "unknown"
    if answer is None:
        listed_for_sure = sending[2] + idempotency.RELEASE_AFTER <= idempotency.now()
        return None if listed_for_sure else "unknown"
    _settle(task, answer, settlement)
    return "sent"


async def poisoned(message_id: str, body: bytes, dequeue_count: int) -> None:
    """broadcast_poison: record the recipients of a message that exhausted its tries as failed
    (unless sent). A message that is not one of ours is logged and dropped; storage failing
    raises, for the poison queue to deliver it again."""
    try:
        envelope = model.read_message(body)
    except model.BadMessage as error:
        logger.error("broadcast_poison message=%s outcome=dropped reason=%s", message_id, error)
        return
    try:
        broadcast, verified = await table.open_message(envelope, "broadcast_poison", message_id)
        if broadcast is None:
            return
        reason = "its queue message failed every try"
        found = Settlement(broadcast.id)
        learnt = await asyncio.gather(*(_found_sent(broadcast.task(to), found)
                                        for to in verified))
        await found.write()  # sent after all: the storage that failed it kept no row saying so
        marked = await asyncio.gather(*(
            table.give_up(broadcast.task(to), UNKNOWN_OUTCOME if what == "unknown" else reason)
            for to, what in zip(verified, learnt, strict=True) if what != "sent"))
        if any(marked):  # not those sent after all: they are left as they are
            telemetry.count_poisoned(sum(marked))
    except storage.StorageUnavailable as error:
        # Refused (it never will be taken), or still failing after POISON_TRIES: this queue has
        # no poison queue of its own, so retrying more would loop until the message expires.
        if isinstance(error, storage.StorageRefused) or dequeue_count >= POISON_TRIES:
            logger.error(
                "broadcast_poison message=%s id=%s outcome=abandoned tries=%d reason=%s "
                "(its recipients stay as they were; GET the broadcast to see them)",
                message_id, envelope.broadcast, dequeue_count, error,
            )
            return
        raise

