"""Idempotency-Key on make_call, send_sms and POST /api/broadcasts (and the key of each
broadcast recipient): one key places at most one call, sends at most one message or starts at
most one broadcast, across every instance of the app.

The key (the IETF HTTP API working group's draft "The Idempotency-Key HTTP Header Field": a
client-chosen string) is claimed in Table Storage by a conditional insert before anything is
sent to Twilio, with a fingerprint of the request. Each key's row moves through:

- `claimed`: the request is being checked (settings, body, policy); nothing sent yet.
- `sending`: the create request is about to go to Twilio; `To`, `From` and `SentAt` are kept
  so an unknown outcome can be looked up.
- `done`: the answer (status and body) is kept and replayed to every retry for 24 hours.

A retry with the same key and the same request finds the row: `done` replays the answer with
`Idempotent-Replayed: true`; a fresh `claimed` or `sending` row is still in flight (409 with
Retry-After). A `sending` row whose request is over (its deadline passed, or it ended in a
timeout or a 5xx from Twilio) has an unknown outcome: the app looks it up at Twilio (the Calls
or Messages list, filtered by to and from, created since `SentAt`, never a SID another request
of the app owns: shared.outbound.calls.find, sms.find) and answers with what it finds, recording
it as `done`. Nothing found: the key is released (and this request sent) only once
`RELEASE_AFTER` seconds have passed since `SentAt`, long past the moment Twilio lists a created
call or message; until then, 409.

Answers that prove nothing was created release the key at once, so a retry is sent afresh: the
app's settings error (500 before anything was sent), Twilio's rate limit and a connection to
Twilio that was never made (503). Everything else (201, 202, every 4xx: our policy's refusals and
Twilio's) is `done` and replayed.

Keys expire after 24 hours: an expired row is claimed again as if it were new, and the
`idempotency_expiry` timer deletes expired rows (they hold numbers and answers).

A key belongs to its caller: the row is keyed by the key together with the credential the
request came with (the function key it presented, and the Entra principal App Service
Authentication names), so one caller's key never replays or reveals another caller's answer.
What this can and cannot tell apart: docs/security.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from shared import telemetry
from shared.common import logs, responses
from shared.common.responses import Refusal
from shared.common.settings import SettingsError, load_app_service_auth
from shared.records import storage
from shared.telemetry import names

logger = logs.get_logger(__name__)

TABLE = "TwilioIdempotencyKeys"
HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
TTL = datetime.timedelta(hours=24)
# A request holds its claim at most this long (the host's functionTimeout is 12 s); a claim
# older than that belongs to a request that died, before it sent anything ("claimed") or with an
# unknown outcome ("sending").
IN_FLIGHT = datetime.timedelta(seconds=15)
# An unknown outcome with nothing found at Twilio is released this long after it was sent.
RELEASE_AFTER = datetime.timedelta(seconds=60)
RETRY_AFTER = "2"
# Tries of insert-then-read when the row keeps vanishing in between (another request releasing
# the key each time): then it is in flight, for all this request can tell.
CLAIM_ATTEMPTS = 3
REPLAYABLE = frozenset({201, 202, 400, 403, 404, 409, 413, 415, 422})
RELEASABLE = frozenset({503})

# (to, from, sent at, owner) -> the answer for what Twilio has, or None when it has nothing.
Lookup = Callable[
    [str, str | None, datetime.datetime, str], Awaitable[func.HttpResponse | None]
]
# The headers that say who called: the function key the host checked (or ?code=), and the
# principal App Service Authentication signed in (it strips this header from clients' requests).
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
PRINCIPAL_HEADER = "x-ms-client-principal-id"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def now() -> datetime.datetime:
    """The time keys are judged by (their claims, their day, the sweep): for a caller that asks
    whether a key of its own may have expired."""
    return _now()


def read_key(req: func.HttpRequest) -> str | None:
    """The Idempotency-Key header, None without one; Refusal 400 when it is not 1 to 255
    printable ASCII characters. Spaces and tabs around it are not part of it (HTTP's optional
    whitespace, which Azure's front end trims too): `" abc "` is the key `abc`, and a header of
    blanks names no key, so it is refused rather than shared by every request that sends it."""
    value = req.headers.get(HEADER)
    if value is None:
        return None
    value = value.strip(" \t")
    if "," in value:
        # The host joins a repeated header with commas: two keys, or one with a comma in it,
        # cannot be told apart, and neither names one request.
        raise Refusal(
            400,
            "Send one Idempotency-Key header, without commas: more than one was given (or "
            "the key has a comma in it).",
        )
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in value):
        raise Refusal(
            400,
            f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable ASCII "
            "characters, like a UUID.",
        )
    return value




def caller_scope(req: func.HttpRequest) -> str:
    """Who sent the request, as far as the app can tell: the function key it presented and the
    signed-in principal, if any. Only a digest is kept. A request without either (a local host
    that enforces no key) shares the empty scope. The principal header counts only with App
    Service authentication on: otherwise the caller wrote it, and it names nobody."""
    key = (req.headers.get(KEY_HEADER) or req.params.get(KEY_QUERY) or "").strip()
    principal = (req.headers.get(PRINCIPAL_HEADER) or "").strip() if load_app_service_auth() else ""
    if not key and not principal:
        return ""
    return hashlib.sha256(f"{key}\n{principal}".encode()).hexdigest()


def fingerprint(function: str, req: func.HttpRequest) -> str:
    """What makes two requests "the same request": the function, the body's content type and
    its bytes."""
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    digest = hashlib.sha256(f"{function}\n{content_type}\n".encode())
    digest.update(req.get_body() or b"")
    return digest.hexdigest()


@dataclass
class Claim:
    """A key this request holds; `sending` and `finish` move it on."""

    function: str
    row_key: str
    entity: dict[str, Any]
    # Set by `carry_on_later`: the key stays claimed whatever the answer.
    held_for_a_retry: bool = False

    def carry_on_later(self) -> None:
        """This request's work may have begun and cannot be told apart from work not done (a
        broadcast's queue messages whose puts have no known outcome): leave the key claimed,
        neither answered for replays nor released, so that a retry after IN_FLIGHT takes it
        over with the values it carries (the broadcast's id) and carries on the same work,
        which each recipient's own key keeps from sending twice."""
        self.held_for_a_retry = True

    @property
    def owner(self) -> str:
        """Whose call or message a record is (shared.records.store's Owner): this key's row."""
        return f"{self.function}:{self.row_key}"

    async def sending(self, to: str, from_: str | None) -> func.HttpResponse | None:
        """Called just before the create request goes to Twilio: None to go on, or the answer
        to give instead when storage cannot keep the state (then nothing is sent)."""
        from azure.data.tables import UpdateMode

        entity = self.entity | {"State": "sending", "To": to, "From": from_ or "", "SentAt": _now()}
        try:
            await storage.within_deadline(
                storage.on_table(TABLE, lambda t: t.upsert_entity(entity, mode=UpdateMode.MERGE))
            )
        except (storage.StorageUnavailable, SettingsError) as error:
            return _storage_unavailable(self.function, error)
        self.entity = entity
        return None

    async def finish(self, response: func.HttpResponse) -> None:
        """Keep the answer for replays, release the key, or leave an unknown outcome to be
        looked up, by what the answer proves."""
        try:
            done = await self.settle(response)
            if done is not None:
                await storage.within_deadline(
                    storage.on_table(TABLE, lambda t: t.upsert_entity(done)))
        except (storage.StorageUnavailable, SettingsError) as error:
            logger.error("%s outcome=idempotency-not-kept status=%d reason=%s", self.function,
                         response.status_code, error)

    async def settle(self, response: func.HttpResponse) -> dict[str, Any] | None:
        """`finish` without the write: the `done` row to keep for replays (the caller writes it,
        or keeps the answer elsewhere: a broadcast recipient's row), or None when the key was
        released now or left to be looked up. Until a `done` row is written the key stays
        `sending`, so a retry looks the outcome up (and finds it) rather than sending again.
        Raises StorageUnavailable when a release fails."""
        status = response.status_code
        if self.held_for_a_retry:
            return None
        if status in REPLAYABLE:
            return _done_row(self.function, self.row_key, self.entity, response)
        if status in RELEASABLE or self.entity.get("State") == "claimed":
            await _release(self.function, self.row_key)
        # else: sending, with an unknown outcome: the next retry looks it up.
        return None


# Table Storage holds at most 64 KiB in one property (a string: 32,768 UTF-16 characters) and
# 1 MiB in a row. An answer longer than BODY_CHARACTERS (a broadcast's, listing thousands of
# refused numbers) is kept compressed, in binary properties of BODY_PART_BYTES each.
BODY_CHARACTERS = 30_000
BODY_PART_BYTES = 60_000
MAX_BODY_PARTS = 15


def _done_row(
    function: str, row_key: str, entity: dict[str, Any], response: func.HttpResponse
) -> dict[str, Any]:
    done = {
        **entity,
        "PartitionKey": function,
        "RowKey": row_key,
        "State": "done",
        "Status": response.status_code,
    }
    return done | _body_properties((response.get_body() or b"").decode("utf-8"))


def _body_properties(body: str) -> dict[str, Any]:
    """The answer's body as a row keeps it: a string, or compressed in parts when too long for
    one property. Raises StorageRefused when even that is more than a row holds."""
    if len(body) <= BODY_CHARACTERS:
        return {"Body": body}
    import zlib

    packed = zlib.compress(body.encode("utf-8"))
    parts = [packed[i:i + BODY_PART_BYTES] for i in range(0, len(packed), BODY_PART_BYTES)]
    if len(parts) > MAX_BODY_PARTS:
        raise storage.StorageRefused(f"the answer ({len(body)} characters) is too long to keep")
    return {"BodyParts": len(parts)} | {f"Body{i}": part for i, part in enumerate(parts)}


def _body(entity: dict[str, Any]) -> str:
    """The body `_body_properties` kept."""
    parts = entity.get("BodyParts")
    if not parts:
        return entity.get("Body") or ""
    import zlib

    return zlib.decompress(b"".join(bytes(entity[f"Body{i}"]) for i in range(int(parts)))
                           ).decode("utf-8")


async def _store_done(
    function: str, row_key: str, entity: dict[str, Any], response: func.HttpResponse
) -> None:
    done = _done_row(function, row_key, entity, response)
    await storage.within_deadline(storage.on_table(TABLE, lambda t: t.upsert_entity(done)))


async def _release(function: str, row_key: str) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    with contextlib.suppress(ResourceNotFoundError):
        await storage.within_deadline(
            storage.on_table(TABLE, lambda t: t.delete_entity(function, row_key))
        )


def _replay(entity: dict[str, Any]) -> func.HttpResponse:
    return responses.json_text(_body(entity), int(entity["Status"]),
                               {REPLAYED_HEADER: "true"})


def _in_flight(function: str, until: datetime.datetime | None = None) -> func.HttpResponse:
    """409 for a key in flight; Retry-After is RETRY_AFTER, or the seconds to `until` (when
    nothing can change before then: an unknown outcome waiting to be released)."""
    logger.warning("%s outcome=refused status=409 reason=idempotency-key-in-flight", function)
    _outcome("in-flight")
    after = RETRY_AFTER
    if until is not None:
        after = str(max(int(RETRY_AFTER), math.ceil((until - _now()).total_seconds())))
    return responses.json_error(
        409,
        "A request with this Idempotency-Key is still being processed: retry after the "
        "Retry-After seconds to get its answer.",
        headers={"Retry-After": after},
    )


def _aware(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    return datetime.datetime.fromisoformat(str(value))


async def unknown_outcome(
    function: str, key: str
) -> tuple[str, str | None, datetime.datetime, str] | None:
    """(to, from, sent at, owner) when `key`'s create went out and no answer was kept for it
    (`sending`): what a lookup at Twilio needs to learn its outcome. None when the key is gone
    or never sent. Raises StorageUnavailable."""
    from azure.core.exceptions import ResourceNotFoundError

    row = row_key(key)
    try:
        entity = await storage.within_deadline(
            storage.on_table(TABLE, lambda t: t.get_entity(function, row)))
    except ResourceNotFoundError:
        return None
    if entity.get("State") != "sending" or not entity.get("SentAt"):
        return None
    return (entity.get("To") or "", entity.get("From") or None, _aware(entity["SentAt"]),
            Claim(function, row, dict(entity)).owner)


def row_key(key: str, scope: str = "") -> str:
    """The key's row: a digest of the key within its caller's scope (any characters are safe)."""
    return hashlib.sha256((f"{scope}\n{key}" if scope else key).encode()).hexdigest()


async def claim(
    function: str,
    key: str,
    request_fingerprint: str,
    lookup: Lookup,
    sending: tuple[str, str | None] | None = None,
    scope: str = "",
    carry: dict[str, Any] | None = None,
) -> Claim | func.HttpResponse:
    """This request's claim on `key` (within the caller's `scope`), or the answer to give
    instead (a replay, 409, 422, 503).

    `sending` (to, from), for a caller that knows its request before claiming (a broadcast's
    recipient): the claim is taken straight in the `sending` state, one write instead of two,
    and the caller sends without calling `Claim.sending`.

    `carry`: fields kept on the row for the request's work, such as the id of the broadcast a
    key starts. Taking over a claim whose request died keeps the earlier values, so the retry
    carries on the same work instead of starting a second one."""
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
    )

    row = row_key(key, scope)
    now = _now()
    fresh = {
        "PartitionKey": function,
        "RowKey": row,
        "State": "claimed",
        **(carry or {}),
        "Fingerprint": request_fingerprint,
        "ClaimedAt": now,
        "ExpiresAt": now + TTL,
    }
    if sending is not None:
        fresh |= {"State": "sending", "To": sending[0], "From": sending[1] or "", "SentAt": now}
    try:
        for _ in range(CLAIM_ATTEMPTS):
            try:
                await storage.within_deadline(
                    storage.on_table(TABLE, lambda t: t.create_entity(dict(fresh)))
                )
                _outcome("claimed")
                return Claim(function, row, fresh)
            except ResourceExistsError:
                pass
            try:
                existing = await storage.within_deadline(
                    storage.on_table(TABLE, lambda t: t.get_entity(function, row))
                )
                break
            except ResourceNotFoundError:
                continue  # released between the two: claim it afresh
        else:
            return _in_flight(function)
        entity = dict(existing)
        etag = existing.metadata.get("etag")
        expired = _aware(entity["ExpiresAt"]) <= now
        state = entity.get("State")
        stale_claim = state == "claimed" and _aware(entity["ClaimedAt"]) + IN_FLIGHT <= now
        if not expired and entity.get("Fingerprint") != request_fingerprint:
            logger.warning("%s outcome=refused status=422 reason=idempotency-key-reused", function)
            return responses.json_error(
                422,
                "This Idempotency-Key was used for a different request: use a new key for a "
                "new request.",
            )
        if not expired and state == "done":
            logger.info("%s outcome=replayed status=%s", function, entity.get("Status"))
            _outcome("replayed")
            return _replay(entity)
        if not expired and state == "sending":
            sent_at = _aware(entity["SentAt"])
            if sent_at + IN_FLIGHT > now:
                return _in_flight(function)
            owner = Claim(function, row, entity).owner
            # The lookup, and a create if Twilio has nothing, repeat an earlier attempt.
            telemetry.mark_retry()
            try:
                found = await lookup(
                    entity.get("To") or "", entity.get("From") or None, sent_at, owner
                )
            except (storage.StorageUnavailable, SettingsError):
                raise
            except Exception as error:  # Twilio unreachable or refusing: still unknown
                return _lookup_failed(function, error)
            if found is not None:
                logger.info("%s outcome=found-at-twilio status=%d", function, found.status_code)
                _outcome("found-at-twilio")
                await _store_done(function, row, entity, found)
                found.headers[REPLAYED_HEADER] = "true"
                return found
            if sent_at + RELEASE_AFTER > now:
                # Twilio has nothing yet: asking again before the key can be released would
                # only ask Twilio again, so the retry is told to come back then.
                return _in_flight(function, until=sent_at + RELEASE_AFTER)
            logger.warning("%s outcome=released reason=nothing-found-at-twilio", function)
            _outcome("released")
        elif not expired and not stale_claim:
            return _in_flight(function)
        # Expired, a claim that died before sending, or an unknown outcome Twilio never saw:
        # take the key over, unless another request just did (the etag changed).
        if not expired:
            fresh |= {name: entity[name] for name in carry or {} if name in entity}
        try:
            await storage.within_deadline(
                storage.on_table(
                    TABLE,
                    lambda t: t.update_entity(
                        dict(fresh), etag=etag, match_condition=MatchConditions.IfNotModified
                    ),
                )
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            # Changed (another request took it over) or gone (the expiry sweep deleted it, or
            # another retry released it): either way another request decides it now, and a
            # retry gets its answer or claims the key afresh.
            return _in_flight(function)
        _outcome("taken-over")
        return Claim(function, row, fresh)
    except (storage.StorageUnavailable, SettingsError) as error:
        return _storage_unavailable(function, error)


@dataclass(frozen=True)
class Wanted:
    """One key a caller would claim in a group (`claim_many`): straight into `sending`."""

    key: str
    fingerprint: str
    to: str
    from_: str | None


async def claim_many(function: str, wanted: list[Wanted]) -> list[Claim] | None:
    """Claim every key of `wanted` in one entity group transaction (one storage operation for
    up to 100: a function's keys share a partition), each straight into `sending` as `claim`
    does with `sending=`; None when any of them exists already (the transaction then claims
    none, and the caller claims them one by one, which decides each: a replay, in flight,
    taken over). `SentAt` is now, at most the time of each send: an unknown outcome's lookup
    looks from then on. A claim whose send does not happen after all (out of time, refused in
    between) is `release`d. Raises StorageUnavailable."""
    from azure.data.tables import TableTransactionError

    now = _now()
    rows = [{
        "PartitionKey": function, "RowKey": row_key(w.key), "State": "sending",
        "Fingerprint": w.fingerprint, "ClaimedAt": now, "ExpiresAt": now + TTL,
        "To": w.to, "From": w.from_ or "", "SentAt": now,
    } for w in wanted]
    if not rows:
        return []
    if len({row["RowKey"] for row in rows}) < len(rows):
        return None  # one key twice: the second is a replay of the first, decided one by one

    async def insert_all(t: Any) -> bool:
        try:
            await t.submit_transaction([("create", dict(row)) for row in rows])
        except TableTransactionError as error:
            if error.status_code == 409:  # a key exists: a redelivery, or another copy
                return False
            raise
        return True

    if not await storage.within_deadline(storage.on_table(TABLE, insert_all)):
        return None
    return [Claim(function, row["RowKey"], row) for row in rows]


async def release(claims: list[Claim]) -> None:
    """Give back claims whose sends never happened (nothing was sent for them: out of time,
    refused in between), taken together by `claim_many` or alone: one transaction of deletes.
    Raises StorageUnavailable; a claim left behind is released by its key's own rules (looked
    up at Twilio, then released after RELEASE_AFTER)."""
    from azure.core import MatchConditions

    if claims:
        await storage.within_deadline(storage.on_table(TABLE, lambda t: t.submit_transaction([
            ("delete", {"PartitionKey": c.function, "RowKey": c.row_key},
             {"match_condition": MatchConditions.Unconditionally}) for c in claims])))


def _outcome(outcome: str) -> None:
    """What became of the key, on the running span (telemetry on): names.IDEMPOTENCY_OUTCOME."""
    telemetry.set_attributes({names.IDEMPOTENCY_OUTCOME: outcome})


def _storage_unavailable(function: str, error: Exception) -> func.HttpResponse:
    logger.error("%s outcome=failed reason=idempotency-storage: %s", function, error)
    if isinstance(error, SettingsError):  # the keys' storage setting: named, not "unavailable"
        return responses.not_configured(error)
    return responses.json_error(
        503,
        "The Idempotency-Key cannot be honoured now (its storage is unavailable), so nothing "
        "was sent: try again shortly.",
        headers={"Retry-After": "5"},
    )


async def guarded(
    req: func.HttpRequest,
    function: str,
    attempt: Callable[[Claim | None], Awaitable[func.HttpResponse]],
    lookup: Lookup,
    carry: dict[str, Any] | None = None,
) -> func.HttpResponse:
    """`attempt(None)` without an Idempotency-Key; with one, `attempt(claim)` at most once per
    key (the attempt calls `claim.sending` before it sends), else the answer the key calls for."""
    try:
        key = read_key(req)
    except Refusal as refusal:
        logger.warning("%s outcome=refused status=400 reason=idempotency-key", function)
        return responses.json_error(refusal.status, refusal.error)
    if key is None:
        return await attempt(None)
    held = await claim(
        function, key, fingerprint(function, req), lookup, scope=caller_scope(req), carry=carry
    )
    if not isinstance(held, Claim):
        return held
    response = await attempt(held)
    await held.finish(response)
    return response


def _lookup_failed(function: str, error: Exception) -> func.HttpResponse:
    logger.error("%s outcome=failed reason=lookup-failed error=%s", function, type(error).__name__)
    return responses.json_error(
        503,
        "An earlier request with this Idempotency-Key may have reached Twilio, and Twilio "
        "could not be asked now: try again shortly (nothing new was sent).",
        headers={"Retry-After": "5"},
    )


# Seconds one sweep of expired keys may take: inside host.json's 12 s functionTimeout. What is
# left is deleted by the next run.
EXPIRY_BUDGET = 8.0


async def delete_expired(budget: float = EXPIRY_BUDGET) -> int:
    """Delete the key rows whose 24 hours are over, 100 to a transaction (one partition per
    function); how many were deleted. Storage failing ends the sweep early (logged): the next
    run carries on."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

    deleted = 0
    now = _now()

    async def delete(table: Any, batch: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> int:
        try:
            await storage.bounded(table.submit_transaction(batch))
            return len(batch)
        except storage.StorageRefused as error:
            if error.status not in (404, 412):
                raise
        # A key claimed afresh (412) or deleted by another sweep (404) since the query fails the
        # whole transaction: the others go one at a time, and that one is left as it is.
        done = 0
        for _, entity, condition in batch:
            try:
                await storage.bounded(
                    table.delete_entity(entity["PartitionKey"], entity["RowKey"], **condition))
                done += 1
            except (ResourceModifiedError, ResourceNotFoundError):
                pass
        return done

    async def sweep(table: Any) -> None:
        nonlocal deleted
        batch: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        rows = table.query_entities(
            "ExpiresAt lt @now", parameters={"now": now}, select=["PartitionKey", "RowKey"]
        )
        async for row in rows:
            if batch and batch[0][1]["PartitionKey"] != row["PartitionKey"]:
                deleted, batch = deleted + await delete(table, batch), []
            # Only if unchanged since read: a key claimed afresh in between is not deleted.
            batch.append(("delete", {"PartitionKey": row["PartitionKey"],
                                     "RowKey": row["RowKey"]},
                          {"etag": row.metadata["etag"],
                           "match_condition": MatchConditions.IfNotModified}))
            if len(batch) == 100:
                deleted, batch = deleted + await delete(table, batch), []
        if batch:
            deleted += await delete(table, batch)

    try:
        await asyncio.wait_for(storage.on_table(TABLE, sweep), budget)
    except TimeoutError:
        logger.info("idempotency_expiry outcome=partial deleted=%d (the next run goes on)",
                    deleted)
        return deleted
    except (storage.StorageUnavailable, SettingsError) as error:
        logger.error("idempotency_expiry outcome=failed deleted=%d reason=%s", deleted, error)
        return deleted
    logger.info("idempotency_expiry outcome=swept deleted=%d", deleted)
    return deleted
