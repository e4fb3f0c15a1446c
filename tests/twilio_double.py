"""A stand-in for Twilio's REST API at the HTTP layer: the library's own async HTTP client seam.

Everything above the HTTP request is the real twilio library (URL building, form encoding,
auth, response parsing, error mapping), so the tests see what Twilio would receive. Each
request is recorded; each answer is Twilio-shaped JSON, scripted per test.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

from twilio.http import AsyncHttpClient
from twilio.http.response import Response


def new_sid(prefix: str) -> str:
    """A SID of its own for every created call or message, as Twilio gives: the app tells its
    calls and messages apart by SID (records, idempotency lookups)."""
    return prefix + uuid.uuid4().hex


@dataclass
class RecordedRequest:
    method: str
    url: str
    params: dict[str, object]
    data: dict[str, object]
    headers: dict[str, str]
    auth: tuple[str, str] | None

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


Behaviour = Callable[[RecordedRequest], "Response | Exception"]


@dataclass
class TwilioApiDouble(AsyncHttpClient):
    """Records requests; answers with the next scripted behaviour, or a created call or message
    (by the path: Calls.json or Messages.json)."""

    requests: list[RecordedRequest] = field(default_factory=list)
    behaviours: deque[Behaviour] = field(default_factory=deque)
    # What the list endpoints answer instead of a page, one per request (`fail_lists`).
    list_behaviours: deque[Behaviour] = field(default_factory=deque)
    delay: float = 0.0
    created_call_json: Callable[[RecordedRequest], dict[str, object]] | None = None
    created_message_json: Callable[[RecordedRequest], dict[str, object]] | None = None
    # Every call and message created so far, as Twilio answered it: what its list endpoints
    # (GET Calls.json, Messages.json) return, newest first, filtered by To and From.
    created: list[dict[str, object]] = field(default_factory=list)
    # Seconds to wait *after* creating, before answering: a timeout that left the resource made.
    delay_after_create: float = 0.0

    def __post_init__(self) -> None:
        super().__init__(logger=logging.getLogger("tests.twilio_double"), is_async=True)

    # Scripting -------------------------------------------------------------------------------
    def answer(self, status: int, payload: dict[str, object], headers: dict | None = None) -> None:
        body = json.dumps(payload)
        self.behaviours.append(lambda _req: Response(status, body, headers or {}))

    def error(self, status: int, code: int, message: str) -> None:
        """Twilio's error body: {"code", "message", "more_info", "status"}."""
        self.answer(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    def fail(self, exception: Exception) -> None:
        self.behaviours.append(lambda _req: exception)

    def fail_lists(self, status: int, code: int, message: str, times: int = 1) -> None:
        """The next `times` list requests get Twilio's error body instead of a page."""
        body = json.dumps({"code": code, "message": message, "status": status,
                           "more_info": f"https://www.twilio.com/docs/errors/{code}"})
        for _ in range(times):
            self.list_behaviours.append(lambda _req: Response(status, body, {}))

    # The AsyncHttpClient interface -----------------------------------------------------------
    async def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        recorded = RecordedRequest(
            method=method.upper(),
            url=url,
            params=dict(params or {}),
            data=dict(data or {}),
            headers=dict(headers or {}),
            auth=auth,
        )
        self.requests.append(recorded)
        if self.delay:
            await asyncio.sleep(self.delay)
        if recorded.method == "GET" and recorded.path.endswith(("/Calls.json", "/Messages.json")):
            if self.list_behaviours:
                listed = self.list_behaviours.popleft()(recorded)
                if isinstance(listed, Exception):
                    raise listed
                return listed
            return self._listed(recorded)
        outcome = (
            self.behaviours.popleft()(recorded) if self.behaviours else self._created(recorded)
        )
        if self.delay_after_create:
            await asyncio.sleep(self.delay_after_create)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @property
    def creates(self) -> list[RecordedRequest]:
        """The POSTs that asked Twilio to create a call or a message."""
        return [r for r in self.requests if r.method == "POST"]

    def _listed(self, req: RecordedRequest) -> Response:
        """A page of Twilio's list endpoint, as the 2010 API shapes it: newest first, filtered
        by To, From and the date filters (DateSent> for messages, StartTime> for calls), paged
        by PageSize and Page (a next page's URI carries its query, as Twilio's does)."""
        query = {**dict(parse_qsl(urlsplit(req.url).query)),
                 **{k: str(v) for k, v in req.params.items()}}
        kind = "messages" if req.path.endswith("/Messages.json") else "calls"
        wanted = {k: v for k, v in query.items() if k in ("To", "From")}
        dated, after = (("date_sent", query.get("DateSent>")) if kind == "messages"
                        else ("start_time", query.get("StartTime>")))
        items = [
            c
            for c in reversed(self.created)
            if str(c["uri"]).split("/")[-2].lower() == kind
            and all(c.get(k.lower()) == v for k, v in wanted.items())
            and (after is None or _after(c.get(dated), after))
        ]
        size = int(query.get("PageSize", 50))
        number = int(query.get("Page", 0))
        shown = items[number * size:(number + 1) * size]
        following = None
        if (number + 1) * size < len(items):
            keep = {k: v for k, v in query.items() if k not in ("Page", "PageToken")}
            following = f"{req.path}?{urlencode({**keep, 'Page': number + 1})}"
        page = {
            kind: shown,
            "end": max(number * size + len(shown) - 1, 0),
            "first_page_uri": req.path,
            "next_page_uri": following,
            "page": number,
            "page_size": size,
            "previous_page_uri": None,
            "start": number * size,
            "uri": req.path,
        }
        return Response(200, json.dumps(page), {"Content-Type": "application/json"})

    def _created(self, req: RecordedRequest) -> Response:
        if req.path.endswith("/Messages.json"):
            payload = (self.created_message_json or default_created_message)(req)
        else:
            payload = (self.created_call_json or default_created_call)(req)
        payload.setdefault("date_created", None)
        if payload["date_created"] is None:
            payload["date_created"] = formatdate(usegmt=True)
        # What the list filters go by: a message's date sent, a call's start time.
        payload.setdefault("date_sent" if req.path.endswith("/Messages.json") else "start_time",
                           payload["date_created"])
        self.created.append(payload)
        return Response(201, json.dumps(payload), {"Content-Type": "application/json"})


def default_created_call(req: RecordedRequest) -> dict[str, object]:
    """A created call as Twilio answers it (trimmed to the fields the library reads)."""
    account_sid = req.path.split("/")[3]
    sid = new_sid("CA")
    return {
        "sid": sid,
        "account_sid": account_sid,
        "to": req.data.get("To"),
        "to_formatted": req.data.get("To"),
        "from": req.data.get("From"),
        "from_formatted": req.data.get("From"),
        "status": "queued",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "date_created": None,
        "uri": f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json",
    }


def default_created_message(req: RecordedRequest) -> dict[str, object]:
    """A created message as Twilio answers it: queued, with the sender it chose when a
    Messaging Service sends it (trimmed to the fields the library reads)."""
    account_sid = req.path.split("/")[3]
    service = req.data.get("MessagingServiceSid")
    media = req.data.get("MediaUrl") or []
    sid = new_sid("SM")
    return {
        "sid": sid,
        "account_sid": account_sid,
        "to": req.data.get("To"),
        "from": req.data.get("From"),  # null until a Messaging Service has picked a sender
        "messaging_service_sid": service,
        "body": req.data.get("Body") or "",
        "status": "accepted" if service else "queued",
        "num_segments": "1",
        "num_media": str(len(media) if isinstance(media, list) else 1),
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
    }


def _after(value: object, bound: str) -> bool:
    """Whether an RFC 2822 date (as Twilio writes them) is at or after an ISO 8601 bound."""
    if not isinstance(value, str) or not value:
        return False
    return parsedate_to_datetime(value) >= datetime.datetime.fromisoformat(
        bound.replace("Z", "+00:00"))
