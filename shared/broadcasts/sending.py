"""What broadcast_send does with one queue message: send it once, through the same code as
send_sms and make_call, and record where it ended.

The idempotency key (broadcast id, recipient) is claimed as for an Idempotency-Key header, so a
message the queue delivers twice (a redelivery after a crash, a chunk delivered twice) still
reaches Twilio once. What cannot be settled now raises `TryAgain` with how long to wait:
Twilio's rate limit (its Retry-After, about a second), a key still in flight (a few seconds),
an unknown outcome (until the key's in-flight time has passed, when a retry looks the outcome up
at Twilio). broadcast_send then puts the message back on the queue that much later, so waiting
does not use up the tries maxDequeueCount allows; those are kept for failures.

BROADCAST_SENDS_PER_SECOND paces this instance's creates (a schedule of evenly spaced slots in
this process), so a broadcast runs at the rate the account allows instead of into 429s. It is
per instance: with Flex Consumption scaled out to N instances the account sees up to N times it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import random
import time
from typing import Any

import azure.functions as func

from shared.broadcasts import delivery, model, queue, table
from shared.broadcasts.settings import load_broadcast_settings
from shared.common import logs, redact, responses
from shared.common.responses import Refusal
from shared.outbound import answers, calls, sms
from shared.outbound.settings import load_call_settings, load_sms_settings
from shared.records import idempotency, storage
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
# A send waits at most this long for its slot in this instance's pace; a longer wait is a
# deferral instead (the queue holds the message, not a function invocation).
MAX_PACING_WAIT = 2.0
# Seconds a chunk's invocation starts new sends for: the last one (Twilio's answer, the records)
# still ends inside host.json's 12 s functionTimeout unless Twilio itself hangs, and a timed-out
# invocation is safe too (its chunk comes back; each recipient's key prevents a second send).
CHUNK_BUDGET = 5.0


class TryAgain(Exception):
    """The message could not be settled now: try it again `after` seconds from now."""

    def __init__(self, reason: str, after: float = DEFAULT_WAIT) -> None:
        super().__init__(reason)
        self.after = after


class Paced(TryAgain):
    """No send slot of this instance's pace was free soon enough; nothing was sent."""


class Pacer:
    """Evenly spaced send slots for this process: `rate` a second, at most MAX_PACING_WAIT ahead.
    One event loop runs the worker's async functions, and nothing awaits between reading and
    taking a slot, so no lock is needed."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next = 0.0

    def reserve(self, max_wait: float = MAX_PACING_WAIT) -> float | None:
        """Seconds to wait for a slot (taken), or None when none is free within `max_wait`."""
        now = time.monotonic()
        slot = max(now, self._next)
        if slot - now > max_wait:
            return None
        self._next = slot + 1.0 / self.rate
        return slot - now


_pacers: dict[float, Pacer] = {}


async def _wait_for_slot(max_wait: float) -> None:
    """Return once this send may go (now or after a wait of at most `max_wait`); raise Paced,
    before anything is claimed or sent, when no slot is free that soon."""
    rate = load_broadcast_settings().sends_per_second
    if rate is None:
        return
    pacer = _pacers.setdefault(rate, Pacer(rate))
    wait = pacer.reserve(max_wait)
    if wait is None:
        raise Paced(
            f"this instance is at BROADCAST_SENDS_PER_SECOND ({rate:g})",
            MAX_PACING_WAIT + random.uniform(0, JITTER),  # noqa: S311 - spreading, not secret
        )
    if wait > 0:
        await asyncio.sleep(wait)


async def deliver(task: model.Task, max_wait: float = MAX_PACING_WAIT) -> str:
    """Send one recipient's text or call; the state it ended in (sent, failed). Raises TryAgain
    (Paced when no send slot came within `max_wait`), and anything storage raises, for the
    message to be tried again."""
    if task.kind == "sms":
        settings: Any = load_sms_settings()
        function = "broadcast_sms"
    else:
        settings = load_call_settings()
        function = "broadcast_call"

    async def lookup(
        to: str, from_: str | None, since: datetime.datetime, owner: str
    ) -> func.HttpResponse | None:
        wanted = dataclasses.replace(request, to=to, from_=from_)
        if task.kind == "sms":
            message = await sms.find(settings, wanted, since, owner)
            return None if message is None else _created(sms.answer(message, True))
        call = await calls.find(settings, wanted, since, owner)
        return None if call is None else _created(calls.answer(call, True))

    request, refusal = _parse(task, settings)
    if refusal is not None:  # the policy's answer does not change between tries: not kept
        return await _settle(task, refusal)
    await _wait_for_slot(max_wait)  # raises Paced: nothing claimed, nothing sent
    if task.kind == "sms":
        try:
            # Opted out since the broadcast was accepted (checked after the wait, just before
            # sending): skipped, as refused. Storage failing raises: the message is tried
            # again, never sent unchecked.
            await sms.screen(request)
        except Refusal as opted_out:
            await table.mark(task.broadcast, task.to, "refused", error=opted_out.error)
            return "refused"
    # Claimed straight into "sending" (one write, not two: the request is known already).
    held = await idempotency.claim(
        function, task.idempotency_key, task.fingerprint, lookup,
        sending=(request.to, request.from_),
    )
    if isinstance(held, idempotency.Claim):
        response = await _send(task, settings, request, held.owner)
        await held.finish(response)
    else:
        response = held
    return await _settle(task, response)


def _created(body: dict[str, object]) -> func.HttpResponse:
    return responses.json_body(body, 201)


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
    task: model.Task, settings: Any, request: Any, owner: str
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
    if task.kind == "sms":
        return _created(sms.answer(created, await sms.record(created, request, owner)))
    return _created(calls.answer(created, await calls.record(created, request.message, owner)))


def _from(task: model.Task) -> dict[str, str]:
    return {"from": task.from_} if task.from_ else {}


async def _settle(task: model.Task, response: func.HttpResponse) -> str:
    body = json.loads(response.get_body() or b"{}")
    if response.status_code == 201:
        await table.mark(task.broadcast, task.to, "sent", sid=str(body.get("sid") or ""))
        return "sent"
    if response.status_code in RETRY_STATUSES:
        raise TryAgain(f"HTTP {response.status_code}: {body.get('error', '')}", _wait(response))
    code = body.get("twilio_code")
    error = body.get("error") or f"HTTP {response.status_code}"
    # Twilio's 21610: the recipient opted out (now kept: shared.outbound.sms): refused, like the
    # opted-out recipients the app knew of itself.
    state = "refused" if code == TWILIO_OPTED_OUT else "failed"
    await table.mark(task.broadcast, task.to, state, error=f"{code}: {error}" if code else error)
    return state


async def deliver_chunk(chunk: model.Chunk) -> dict[str, int]:
    """Send a chunk's recipients one after the other for at most CHUNK_BUDGET seconds, then put
    the rest back as a smaller chunk; how many ended sent, failed, deferred and put back.

    One at a time per chunk: the queue runs batchSize chunks at once, which is the instance's
    concurrency, and BROADCAST_SENDS_PER_SECOND its rate. A recipient that must wait gets its
    own deferred message, so the rest of the chunk does not wait with it. Storage failing raises
    (the queue delivers the chunk again; the recipients already settled replay, not resend)."""
    began = time.monotonic()
    tally = dict.fromkeys(("sent", "failed", "refused", "deferred", "put back"), 0)
    tasks = chunk.tasks()
    for index, task in enumerate(tasks):
        left = CHUNK_BUDGET - (time.monotonic() - began)
        try:
            if left <= 0:
                raise Paced("out of time", 0)
            tally[await deliver(task, max_wait=min(left, MAX_PACING_WAIT))] += 1
        except Paced:
            rest = chunk.rest([t.to for t in tasks[index:]])
            await queue.put_back(rest)
            tally["put back"] = len(rest.recipients)
            break
        except TryAgain as error:
            await queue.defer(task, error.after)
            tally["deferred"] += 1
    return tally


def _wait(response: func.HttpResponse) -> float:
    """Seconds until the next try of an answer that settles nothing."""
    status = response.status_code
    if status == 409:
        wait = IN_FLIGHT_WAIT
    elif status in (500, 502, 504):
        wait = UNKNOWN_OUTCOME_WAIT
    else:
        try:
            wait = float(response.headers.get("Retry-After") or DEFAULT_WAIT)
        except ValueError:
            wait = DEFAULT_WAIT
    return wait + random.uniform(0, JITTER)  # noqa: S311 - spreading retries, not a secret


async def handle(message_id: str, body: bytes, dequeue_count: int) -> None:
    """broadcast_send: one `broadcast-sends` message, a chunk or one recipient.

    A message that is not one of ours (it does not parse, names no recorded broadcast, or its
    recipients' tags do not verify) is logged with its id and dropped: trying it again could
    not change that. A recipient that must wait is deferred, up to MAX_DEFERRALS times, then
    raises, as storage failing does: the queue tries the message again, and after
    maxDequeueCount tries moves it to the poison queue."""
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
        tally = await deliver_chunk(broadcast.chunk(verified))
        logger.info(
            "broadcast_send id=%s outcome=chunk %s",
            broadcast.id,
            " ".join(f"{state.replace(' ', '-')}={n}" for state, n in tally.items()),
        )
        return
    task = broadcast.task(verified[0], envelope.deferrals)
    try:
        outcome = await deliver(task)
    except TryAgain as error:
        if task.deferrals >= MAX_DEFERRALS:
            logger.warning(
                "broadcast_send id=%s to=%s outcome=retry try=%s deferrals=%d reason=%s",
                task.broadcast, redact.phone_number(task.to), dequeue_count, task.deferrals,
                error,
            )
            raise
        await queue.defer(task, error.after)  # if this fails, the queue tries it again
        logger.info(
            "broadcast_send id=%s to=%s outcome=deferred after=%.1fs reason=%s",
            task.broadcast, redact.phone_number(task.to), error.after, error,
        )
        return
    logger.info(
        "broadcast_send id=%s to=%s outcome=%s", task.broadcast, redact.phone_number(task.to),
        outcome,
    )


# Tries of the poison queue's message before broadcast_poison stops retrying a storage failure
# and drops it with an ERROR (the poison queue has no poison queue of its own).
POISON_TRIES = 5


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
        await asyncio.gather(*(table.give_up(broadcast.task(to), reason) for to in verified))
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

