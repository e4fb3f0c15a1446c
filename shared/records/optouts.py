"""Table `TwilioOptOuts`: whether a person has opted out of texts from one of the app's senders,
honoured by every way the app texts (send_sms, broadcasts, voicemail notifications: through
shared.outbound.sms.screen) and kept by sms_url (shared.messageflows) and by Twilio's 21610.
Calls are not affected: an opt-out is about messages.

Partition = the sender: the Messaging Service SID when the app texts through one (an opt-out
from a service covers every number in it, as Twilio applies it), else the app's own number;
row key = the person's number, as Twilio wrote it. So the check before every text is one point
read, and a broadcast reads its sender's opted-out numbers with one partition query.

A row says the latest word: OptedOut true or false, when it changed, and how (`keyword STOP`,
`twilio 21610`: Twilio refused a text because it knows of an opt-out; `keyword START`; or who
cleared it). Rows are kept, never deleted: consent records are worth having when asked.
"""

from __future__ import annotations

import asyncio
import datetime
import re
from typing import Any, NamedTuple

from shared.common import logs, redact
from shared.records import storage

logger = logs.get_logger(__name__)

TABLE = "TwilioOptOuts"

# What Table Storage refuses in a key (and what no phone number has).
_NOT_A_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
MAX_KEY = 200

# Twilio's error when a recipient has opted out of texts from the sender (it blocks them too).
TWILIO_OPTED_OUT = 21610


class OptOut(NamedTuple):
    sender: str
    person: str
    opted_out: bool
    changed_at: str | None
    how: str | None


MAX_HOW = 400

# Senders whose opt-outs decide a text: every number and Messaging Service the app texts from.
Senders = str | tuple[str, ...] | None


def senders_for(from_: str | None, messaging_service_sid: str | None,
                own: tuple[str | None, ...] = ()) -> tuple[str, ...]:
    """The text's own sender (its service, else its number) and the app's other numbers: a
    person who texted STOP to any of them is not texted from another (a Messaging Service set
    up after they stopped the number, another of the app's numbers)."""
    return tuple(s for s in dict.fromkeys((messaging_service_sid, from_, *own)) if s)


def _senders(senders: Senders) -> tuple[str, ...]:
    found = (senders,) if isinstance(senders, str) else tuple(senders or ())
    return tuple(s for s in found if _usable(s))


def _blocked(rows: list[dict[str, Any]], own: str) -> frozenset[str]:
    """Who may not be texted from the sender `own`, given each person's rows under the app's
    senders: whose row under `own` says STOP (Twilio blocks that sender too, whatever they said
    elsewhere), or whose latest word to any of them was STOP. A tie, or a row with no time,
    counts as STOP: the app errs on the side of not texting."""
    latest: dict[str, tuple[str, bool]] = {}
    blocked: set[str] = set()
    for row in rows:
        person, out = row["RowKey"], bool(row.get("OptedOut"))
        when = row.get("ChangedAt")
        said = (when.isoformat() if hasattr(when, "isoformat") else str(when or ""), out)
        if out and (row.get("PartitionKey") == own or not said[0]):
            blocked.add(person)
        latest[person] = max(latest.get(person, said), said)  # on a tie, True (STOP) wins
    return frozenset(blocked | {person for person, (_, out) in latest.items() if out})


def _usable(*keys: str | None) -> bool:
    return all(k and len(k) <= MAX_KEY and not _NOT_A_KEY.search(k) for k in keys)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


async def set_opted_out(sender: str | None, person: str | None, opted_out: bool, how: str,
                        message_sid: str | None = None, reason: str = "") -> bool:
    """Record the person's latest word for this sender; False (nothing written) when either is
    not something storage can key a row by. Raises StorageUnavailable or SettingsError.
    `reason`, a person's free text, is kept on the row with `how` but never logged."""
    if not _usable(sender, person):
        return False
    from azure.data.tables import UpdateMode

    row: dict[str, Any] = {"PartitionKey": sender, "RowKey": person, "OptedOut": opted_out,
                           "ChangedAt": _now(),
                           # Room for its longest: "cleared by " a 100-character name, and a
                           # 200-character reason (optout_requests), whole.
                           "How": (f"{how}: {reason}" if reason else how)[:MAX_HOW]}
    if message_sid:
        row["MessageSid"] = message_sid[:64]
    # Replaced whole: a row is the latest word alone (a clear keeps no MessageSid of the STOP
    # it undid: an attack run's).
    await storage.on_table(TABLE, lambda t: t.upsert_entity(row, mode=UpdateMode.REPLACE))
    logger.info("opt-outs sender=%s to=%s outcome=%s how=%s", redact.phone_number(sender),
                redact.phone_number(person), "opted-out" if opted_out else "opted-in", how)
    return True


async def keep_twilio_refusal(from_: str | None, messaging_service_sid: str | None,
                              person: str | None, message_sid: str | None = None) -> bool:
    """Twilio refused a text to `person` with 21610 (it knows they opted out: a STOP the app did
    not see, or could not keep), in its REST answer (send_sms, broadcasts) or later in the
    text's status callback (a Messaging Service's queued text): kept as their opt-out from the
    text's Messaging Service and its number, as a STOP to them is (shared.messageflows), so
    that the next text from either is refused before Twilio. False when nothing could be
    keyed; raises StorageUnavailable or SettingsError."""
    from shared import telemetry

    kept = False
    for sender in dict.fromkeys(s for s in (messaging_service_sid, from_) if s):
        kept = await set_opted_out(sender, person, True, "twilio 21610", message_sid) or kept
    if kept:
        telemetry.count_opt_out(True, "twilio-21610")
    return kept


async def read(sender: str | None, person: str | None) -> OptOut | None:
    """The person's latest word for this sender (one point read), None if they never gave one."""
    from azure.core.exceptions import ResourceNotFoundError

    if not _usable(sender, person):
        return None
    try:
        row = await storage.on_table(TABLE, lambda t: t.get_entity(sender, person))
    except ResourceNotFoundError:
        return None
    return OptOut(str(sender), str(person), bool(row.get("OptedOut")), row.get("ChangedAt"),
                  row.get("How"))


async def opted_out(senders: Senders, person: str | None) -> bool:
    """Whether the person may not be texted from the first of `senders` (the text's own; the
    rest are the app's other numbers): see `_blocked`. One point read each."""
    keys = _senders(senders)
    found = await asyncio.gather(*(read(s, person) for s in keys))
    rows = [{"PartitionKey": f.sender, "RowKey": f.person, "OptedOut": f.opted_out,
             "ChangedAt": f.changed_at} for f in found if f is not None]
    return bool(keys) and bool(_blocked(rows, keys[0]))


# Recipients one query checks: Table Storage takes at most 15 comparisons in a filter, and the
# partition's is one.
AMONG_PER_QUERY = 14


async def opted_out_among(senders: Senders, people: list[str]) -> frozenset[str]:
    """Which of `people` may not be texted from the first of `senders` (`_blocked`): one query
    per sender for each AMONG_PER_QUERY of them (a broadcast's chunk), instead of a point read
    each. Raises StorageUnavailable or SettingsError."""
    usable = [p for p in dict.fromkeys(people) if _usable(p)]
    keys = _senders(senders)
    if not keys or not usable:
        return frozenset()
    groups = [usable[i : i + AMONG_PER_QUERY] for i in range(0, len(usable), AMONG_PER_QUERY)]

    async def query(t: Any, sender: str, group: list[str]) -> list[dict[str, Any]]:
        names = {f"p{i}": person for i, person in enumerate(group)}
        anyone = " or ".join(f"RowKey eq @{name}" for name in names)
        # Spaces inside the parentheses: the SDK finds @names by splitting on spaces.
        rows = t.query_entities(f"PartitionKey eq @sender and ( {anyone} )",
                                parameters={"sender": sender, **names},
                                select=["PartitionKey", "RowKey", "OptedOut", "ChangedAt"])
        return [dict(row) async for row in rows]

    found = await asyncio.gather(*(
        storage.on_table(TABLE, lambda t, s=sender, g=group: query(t, s, g))
        for sender in keys for group in groups))
    return _blocked([row for rows in found for row in rows], keys[0])


async def opted_out_of(senders: Senders) -> frozenset[str]:
    """Everyone who may not be texted from the first of `senders` (`_blocked`): one partition
    query each (every row, STARTs included, to compare their times)."""
    keys = _senders(senders)
    if not keys:
        return frozenset()

    async def query(t: Any, sender: str) -> list[dict[str, Any]]:
        rows = t.query_entities("PartitionKey eq @sender", parameters={"sender": sender},
                                select=["PartitionKey", "RowKey", "OptedOut", "ChangedAt"])
        return [dict(row) async for row in rows]

    found = await asyncio.gather(*(
        storage.on_table(TABLE, lambda t, s=sender: query(t, s)) for sender in keys))
    return _blocked([row for rows in found for row in rows], keys[0])


def refusal(person: str) -> str:
    """The sentence a text to an opted-out person is refused with."""
    return (f"{person} has opted out of texts from this app (they replied STOP to this sender or "
            "another of the app's numbers, or Twilio reported error 21610): nothing was sent. "
            "They opt back in by texting START to the number they stopped.")


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {"sender": row["PartitionKey"], "number": row["RowKey"],
            "opted_out": bool(row.get("OptedOut")), "changed_at": row.get("ChangedAt"),
            "how": row.get("How")}


async def page(sender: str | None, limit: int, token: dict[str, str] | None
               ) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """One page of the people opted out (of `sender`'s texts, or of any sender's), and the
    continuation token of the next page."""
    query = "OptedOut eq true" + (" and PartitionKey eq @sender" if sender else "")

    async def read_page(t: Any) -> tuple[list[dict[str, Any]], Any]:
        pages = t.query_entities(query, parameters={"sender": sender or ""},
                                 results_per_page=limit).by_page(continuation_token=token)
        async for rows in pages:
            return [_shown(dict(r)) async for r in rows], pages.continuation_token
        return [], None

    return await storage.on_table(TABLE, read_page)


async def clear(sender: str, person: str, who: str, reason: str) -> dict[str, Any] | None:
    """Clear an opt-out by hand (the person asked some other way, or a mistaken 21610), kept
    with who cleared it, when and why; None when the person is not opted out of `sender`."""
    if not await opted_out(sender, person):
        return None
    await set_opted_out(sender, person, False, f"cleared by {who}", reason=reason)
    found = await read(sender, person)
    return None if found is None else {"sender": sender, "number": person,
                                       "opted_out": found.opted_out,
                                       "changed_at": found.changed_at, "how": found.how}
