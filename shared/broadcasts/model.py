"""A broadcast and its queue messages: what is sent, to whom, and how a message proves that
this app queued it.

A broadcast's row holds the one text (or call), its sender and media, and a secret. A queue
message names the broadcast and its recipients, each with a tag (an HMAC of the broadcast id
and the number under that secret), never the text: `read_message` reads one as it comes off
the queue (JSON text; base64 of it from an earlier version of the app), and the broadcast's row
(shared.broadcasts.table.open_message) vouches for its recipients.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from shared.common.e164 import E164  # what the app queues as a recipient (a safe row key too)
from shared.common.responses import Refusal

BROADCAST_ROW = "broadcast"

MAX_RECIPIENTS = 10_000

MAX_BODY_BYTES = 512 * 1024  # 10,000 numbers in JSON, with room

# The fields of each kind: send_sms's for texts, make_call's for calls (and kind).
FIELDS = {
    "sms": ("kind", "to", "body", "from", "media_url"),
    "call": ("kind", "to", "message", "from"),
}

ALL_FIELDS = tuple(dict.fromkeys(FIELDS["sms"] + FIELDS["call"]))

KINDS = ("sms", "call")

STATES = ("queued", "sent", "failed", "refused")

# A broadcast id: "BC", its UTC creation time (sortable), 16 hex digits (unguessable).
ID = re.compile(r"BC[0-9]{14}[0-9a-f]{16}")


CHUNK_SIZE = 100  # recipients a chunk message carries: one row transaction when taken up

# A queue message is at most 64 KiB. A chunk of 100 numbers and their tags is a few KiB (the
# text is on the broadcast's row, not in the message); a test holds it under this.
MAX_MESSAGE_BYTES = 48 * 1024

# Characters of a refused entry kept and answered back (an entry may be any text).
MAX_ENTRY_SHOWN = 100

TAG_LENGTH = 32  # hex digits of a recipient's tag (128 bits)
TAG = re.compile(rf"[0-9a-f]{{{TAG_LENGTH}}}")

# A W3C traceparent, as shared.telemetry writes one into the messages.
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


class BadMessage(ValueError):
    """A queue message that is not one this app put there; the reason is safe to log."""


class BadRow(ValueError):
    """A broadcast's row that is not as this app writes it (edited by hand, or by other code):
    what it would send cannot be trusted. The reason is safe to log."""


# The secret of a broadcast's tags, as `Broadcast.new` makes it (32 bytes, in hex).
SEAL = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Broadcast:
    """A broadcast's row: what is sent to every recipient, and the secret that tags them."""

    id: str
    kind: str
    text: str | None
    from_: str | None
    media_urls: tuple[str, ...]
    seal: str  # hex; never shown: only tags made with it are on the queue

    @classmethod
    def new(
        cls, broadcast_id: str, kind: str, text: str | None, from_: str | None,
        media_urls: tuple[str, ...] = (),
    ) -> Broadcast:
        return cls(broadcast_id, kind, text, from_, media_urls, secrets.token_hex(32))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Broadcast:
        """The broadcast a row records; raises BadRow for a row this app did not write so (a
        Seal or MediaUrls it cannot read made every message of the broadcast, and its poison
        handler, fail on each delivery, for as long as the queue kept it)."""
        seal = row.get("Seal") or ""
        if not isinstance(seal, str) or (seal and not SEAL.fullmatch(seal)):
            raise BadRow("its Seal is not 64 hex digits")
        try:
            media = json.loads(row.get("MediaUrls") or "[]")
        except (TypeError, ValueError, RecursionError):
            media = None
        if not isinstance(media, list) or not all(isinstance(url, str) for url in media):
            raise BadRow("its MediaUrls is not a JSON list of links")
        return cls(
            id=str(row["PartitionKey"]),
            kind="call" if row.get("Kind") == "call" else "sms",
            text=row.get("Text") or None,
            from_=row.get("From") or None,
            media_urls=tuple(media),
            seal=seal,
        )

    def row(self, accepted: int, refused: int) -> dict[str, Any]:
        return {
            "PartitionKey": self.id,
            "RowKey": BROADCAST_ROW,
            "Kind": self.kind,
            "Text": self.text or "",
            "From": self.from_ or "",
            "MediaUrls": json.dumps(list(self.media_urls)),
            "Accepted": accepted,
            "Refused": refused,
            "Seal": self.seal,
            "CreatedAt": datetime.datetime.now(datetime.UTC).isoformat(),
        }

    def tag(self, to: str) -> str:
        """The recipient's tag: proof that this broadcast queued that number."""
        mac = hmac.new(bytes.fromhex(self.seal), f"{self.id}\n{to}".encode(), hashlib.sha256)
        return mac.hexdigest()[:TAG_LENGTH]

    def verified(self, tagged: tuple[tuple[str, str], ...]) -> list[str]:
        """The recipients whose tags this broadcast made (none without a secret)."""
        if not self.seal:
            return []
        return [to for to, tag in tagged if hmac.compare_digest(self.tag(to), tag)]

    def task(self, to: str, deferrals: int = 0, traceparent: str | None = None) -> Task:
        return Task(self.id, self.kind, to, self.from_, self.text, self.media_urls,
                    self.tag(to), deferrals, traceparent)

    def chunk(self, recipients: list[str] | tuple[str, ...], traceparent: str | None = None
              ) -> Chunk:
        return Chunk(self, tuple(recipients), traceparent)


@dataclass(frozen=True)
class Task:
    """One recipient of one broadcast, with what to send them (from the broadcast's row)."""

    broadcast: str
    kind: str
    to: str
    from_: str | None
    text: str | None
    media_urls: tuple[str, ...]
    tag: str
    deferrals: int = 0  # times broadcast_send put it back on the queue to try later
    traceparent: str | None = None  # the span that queued the broadcast (telemetry on)

    def to_json(self) -> str:
        fields: dict[str, Any] = {"broadcast": self.broadcast, "to": self.to, "tag": self.tag}
        if self.deferrals:
            fields["deferrals"] = self.deferrals
        if self.traceparent:
            fields["traceparent"] = self.traceparent
        return json.dumps(fields, separators=(",", ":"))

    @property
    def idempotency_key(self) -> str:
        return f"{self.broadcast}:{self.to}"

    @property
    def fingerprint(self) -> str:
        """The same for every copy of this recipient's message: deferred, or its chunk twice."""
        fields = [self.broadcast, self.kind, self.to, self.from_, self.text, *self.media_urls]
        encoded = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(encoded.encode()).hexdigest()

    def deferred(self) -> Task:
        return replace(self, deferrals=self.deferrals + 1)


@dataclass(frozen=True)
class Chunk:
    """One queue message that stands for up to CHUNK_SIZE recipients of one broadcast."""

    broadcast: Broadcast
    recipients: tuple[str, ...]
    traceparent: str | None = None  # the span that queued the broadcast (telemetry on)

    def to_json(self) -> str:
        fields: dict[str, Any] = {
            "broadcast": self.broadcast.id,
            "recipients": list(self.recipients),
            "tags": [self.broadcast.tag(to) for to in self.recipients],
        }
        if self.traceparent:
            fields["traceparent"] = self.traceparent
        return json.dumps(fields, separators=(",", ":"))

    def rest(self, recipients: list[str]) -> Chunk:
        """What is left of the chunk: the same broadcast, these recipients."""
        return replace(self, recipients=tuple(recipients))

    def tasks(self) -> list[Task]:
        return [self.broadcast.task(to, traceparent=self.traceparent) for to in self.recipients]


def chunks(broadcast: Broadcast, recipients: list[str], traceparent: str | None = None
           ) -> list[Chunk]:
    """The accepted recipients in chunks of CHUNK_SIZE, in order: each chunk's rows in the
    broadcast are then one range of row keys, read back with one query (table.settled).
    `traceparent`: the span queueing them, which each send's span links to."""
    ordered = sorted(recipients)
    return [
        broadcast.chunk(ordered[i : i + CHUNK_SIZE], traceparent)
        for i in range(0, len(ordered), CHUNK_SIZE)
    ]


class Envelope(NamedTuple):
    """A `broadcast-sends` message as read, before its broadcast's row vouches for it."""

    broadcast: str
    tagged: tuple[tuple[str, str], ...]  # (recipient, tag)
    deferrals: int
    is_chunk: bool
    traceparent: str | None = None


def read_message(body: bytes) -> Envelope:
    """A queue message's content: JSON text (or base64 of it, as messages of an earlier
    version of the app were put); raises BadMessage saying what is wrong."""
    text = body.strip()
    if not text.startswith(b"{"):
        try:
            text = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BadMessage("not a JSON object, nor base64 of one") from None
    try:
        data = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadMessage("not JSON") from None
    if not isinstance(data, dict):
        raise BadMessage("not a JSON object")
    broadcast = data.get("broadcast")
    if not isinstance(broadcast, str) or not ID.fullmatch(broadcast):
        raise BadMessage("no broadcast id")
    deferrals = data.get("deferrals", 0)
    if type(deferrals) is not int or not 0 <= deferrals <= 10_000:
        raise BadMessage("'deferrals' is not a count")
    if "recipients" in data:
        recipients, tags = data.get("recipients"), data.get("tags")
        if (
            not isinstance(recipients, list)
            or not isinstance(tags, list)
            or not 0 < len(recipients) == len(tags) <= CHUNK_SIZE
            or not all(isinstance(v, str) for v in recipients + tags)
        ):
            raise BadMessage("'recipients' and 'tags' are not lists of strings of one length")
        tagged, is_chunk = tuple(zip(recipients, tags, strict=True)), True
    else:
        to, tag = data.get("to"), data.get("tag")
        if not isinstance(to, str) or not isinstance(tag, str):
            raise BadMessage("no 'to' and 'tag'")
        tagged, is_chunk = ((to, tag),), False
    if not all(E164.fullmatch(to) for to, _ in tagged):
        raise BadMessage("a recipient that is not an E.164 number")
    if not all(TAG.fullmatch(tag) for _, tag in tagged):
        raise BadMessage("a tag that is not one (32 hex digits)")
    traceparent = data.get("traceparent")
    if not isinstance(traceparent, str) or not TRACEPARENT.fullmatch(traceparent):
        traceparent = None  # only ever a link: a bad one is left out, not a reason to drop
    return Envelope(broadcast, tagged, deferrals, is_chunk, traceparent)


def new_id() -> str:
    """Sortable by creation (a UTC timestamp first), unguessable after it."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
    return f"BC{stamp}{secrets.token_hex(8)}"


def created_at(broadcast_id: str) -> datetime.datetime:
    """When the broadcast was started: the UTC time its id begins with (`new_id`)."""
    return datetime.datetime.strptime(broadcast_id[2:16], "%Y%m%d%H%M%S").replace(
        tzinfo=datetime.UTC)


def recipients(raw: object) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise Refusal(400, "'to' must be a list of 1 to 10,000 E.164 numbers.")
    if len(raw) > MAX_RECIPIENTS:
        raise Refusal(400, f"'to' lists {len(raw):,} numbers: a broadcast takes at most 10,000.")
    if not all(isinstance(n, str) for n in raw):
        raise Refusal(400, "'to' must be a list of strings.")
    return list(raw)


def shown(entry: str) -> str:
    """A refused entry as kept and answered: at most MAX_ENTRY_SHOWN characters."""
    return entry if len(entry) <= MAX_ENTRY_SHOWN else entry[:MAX_ENTRY_SHOWN] + "…"

