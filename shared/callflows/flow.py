"""A call flow: what a call-flow file says, read and checked as a whole before any call walks it.

`check(data, policy)` returns the flow, or every problem found (a flow with any problem is
refused whole: a line that dials the wrong number is worse than one that apologises). The format
(docs/call-flows.md, flows/calls.schema.json):

- `start`: the first step; `by_number`: a first step per called number (optional);
- `blocked_callers`: numbers that get `<Reject>` (optional);
- `hours`: `timezone`, `open` (per day, `HH:MM-HH:MM` ranges) and `closed` (the step callers
  outside them go to); without it the line is always open;
- `steps`: each may `say`, `play` (an https URL) and `pause` (seconds), then does one of
  `menu`, `dial`, `record`, `next`, `hangup` or `reject` (`record` may be followed by `next`).

Every number a flow dials passes make_call's destination policy, and every number its voicemails
text send_sms's (shared.outbound.numbers); neither may be one of the app's own numbers
(TWILIO_PHONE_NUMBER, SMS_SENDERS, the flow's `by_number`): the call or text would come back to
the app, which may answer it by ringing or texting again, every leg billed.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from shared.common.client_names import CLIENT_PREFIX, is_identity
from shared.common.flowfile import FlowProblems
from shared.webhooks.twiml import xml_text

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
ACTIONS = ("menu", "dial", "record", "next", "hangup", "reject")
STEP_KEYS = frozenset({"say", "play", "pause", *ACTIONS})
RINGS = ("one_by_one", "all_at_once")
# Twilio's limits: <Dial timeout> 5 to 600 s, <Record maxLength> up to 4 h, <Gather timeout>,
# and transcription of recordings up to 120 s.
DIAL_TIMEOUT = (5, 600)
GATHER_TIMEOUT = (1, 60)
MAX_RECORD_SECONDS = 14_400
MAX_TRANSCRIBED_SECONDS = 120
MAX_ATTEMPTS = 10
MAX_DIALED = 10
MAX_SAY = 4_000
MAX_PAUSE = 60
# Twilio refuses a TwiML document over 64 kB (its error 11750). What the steps of one document (a
# step and the steps it goes `next` to) put in it may take this much, in UTF-8 bytes, counting
# each step's markup as STEP_MARKUP (a <Say> with a voice and a language, a <Play>, a <Pause>);
# the last step's action (its URLs at the app's origin) takes the rest.
MAX_DOCUMENT_BYTES = 60_000
STEP_MARKUP = 160
# Where a voicemail's TwiML puts the caller's number (shared.callflows.walk builds each step's
# document once and puts each call's caller in there): characters no step name has, and that a
# URL's query and XML both leave as they are. A text in the flow may not contain it.
CALLER_SLOT = "caller.of~this~call"
_RANGE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]|24):([0-5][0-9])")
# The keys a menu option may be pressed with: # ends the caller's input (<Gather finishOnKey>'s
# default) and never reaches the app as a digit.
KEYPAD = re.compile(r"[0-9*]{1,8}")
_STEP_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What a text takes once escaped for XML, to size a step's document before it is built (the
# document itself is escaped by twilio.twiml). A table rather than xml.sax.saxutils.escape: that
# module imports urllib.request, which cost a new instance's first call about 3 ms (BENCHMARKS.md,
# eleventh session); the quote is counted too, so this is never an undercount.
_ESCAPED = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


# The flow's parts are plain classes with __slots__, not NamedTuples: each NamedTuple class costs
# a new instance's first call about 0.14 ms to make (it compiles code for its constructor), and the
# webhook's cold start has no room for it (docs/benchmark.md, "records on a webhook's path").
class Menu:
    __slots__ = ("attempts", "options", "otherwise", "prompt", "speech", "timeout_seconds")

    def __init__(self, prompt: str, options: Mapping[str, str], timeout_seconds: int,
                 attempts: int, otherwise: str, speech: bool) -> None:
        self.prompt = prompt
        self.options = options  # digits (or a spoken word) -> step
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self.otherwise = otherwise
        self.speech = speech


class Dial:
    __slots__ = ("caller_id", "otherwise", "ring", "timeout_seconds", "to")

    def __init__(self, to: tuple[str, ...], ring: str, timeout_seconds: int, otherwise: str,
                 caller_id: str | None) -> None:
        self.to = to
        self.ring = ring
        self.timeout_seconds = timeout_seconds
        self.otherwise = otherwise
        self.caller_id = caller_id


class Record:
    __slots__ = ("max_seconds", "notify_sms", "transcribe")

    def __init__(self, max_seconds: int, transcribe: bool, notify_sms: tuple[str, ...]) -> None:
        self.max_seconds = max_seconds
        self.transcribe = transcribe
        self.notify_sms = notify_sms


class Step:
    __slots__ = (
        "dial",
        "hangup",
        "menu",
        "name",
        "next",
        "pause",
        "play",
        "record",
        "reject",
        "say",
    )

    def __init__(self, name: str, say: str | None = None, play: str | None = None,
                 pause: int | None = None, menu: Menu | None = None, dial: Dial | None = None,
                 record: Record | None = None, next: str | None = None, hangup: bool = False,
                 reject: bool = False) -> None:
        self.name = name
        self.say = say
        self.play = play
        self.pause = pause
        self.menu = menu
        self.dial = dial
        self.record = record
        self.next = next
        self.hangup = hangup
        self.reject = reject


class Hours:
    __slots__ = ("closed", "memo", "open", "timezone")

    def __init__(self, timezone: str,
                 open: Mapping[int, tuple[tuple[datetime.time, datetime.time | None], ...]],
                 closed: str) -> None:
        self.timezone = timezone
        self.open = open  # weekday -> (begin, end or None for midnight) ranges
        self.closed = closed
        # The answer for the minute last asked about: the open times are whole minutes, and so
        # are time zones' offsets, so it holds for that minute. Converting to the zone on every
        # call cost a webhook about 15 µs (BENCHMARKS.md).
        self.memo: dict[int, bool] = {}

    def is_open(self, at: float) -> bool:
        """Whether the line is open at `at`, in seconds since the epoch (time.time())."""
        minute = int(at) // 60
        known = self.memo.get(minute)
        if known is None:
            self.memo.clear()
            known = self.memo[minute] = self._is_open(at)
        return known

    def _is_open(self, at: float) -> bool:
        from zoneinfo import ZoneInfo

        local = datetime.datetime.fromtimestamp(at, ZoneInfo(self.timezone))
        moment = local.time().replace(tzinfo=None)
        return any(
            begin <= moment and (end is None or moment < end)
            for begin, end in self.open.get(local.weekday(), ())
        )


class Flow:
    __slots__ = ("blocked_callers", "by_number", "documents", "hours", "start", "steps")

    def __init__(self, start: str, steps: Mapping[str, Step], by_number: Mapping[str, str],
                 blocked_callers: frozenset[str], hours: Hours | None,
                 documents: dict[tuple[object, ...], tuple[str, ...]]) -> None:
        self.start = start
        self.steps = steps
        self.by_number = by_number
        self.blocked_callers = blocked_callers
        self.hours = hours
        # The TwiML documents built for this flow's steps (shared.callflows.walk), kept with it,
        # each split where a call's caller goes.
        self.documents = documents

    def first_step(self, called: str | None) -> str:
        return self.by_number.get(called or "", self.start)


class Policy:
    """What a flow's numbers are checked against: make_call's allowed countries and caller IDs,
    send_sms's allowed countries (for voicemail notifications), the app's own numbers."""

    __slots__ = (
        "allowed_countries",
        "caller_ids",
        "own_numbers",
        "sms_allowed_countries",
        "texting_problem",
    )

    def __init__(self, allowed_countries: frozenset[str], caller_ids: frozenset[str],
                 sms_allowed_countries: frozenset[str] = frozenset(),
                 own_numbers: frozenset[str] = frozenset(),
                 texting_problem: str | None = None) -> None:
        self.allowed_countries = allowed_countries
        self.caller_ids = caller_ids
        self.sms_allowed_countries = sms_allowed_countries
        self.own_numbers = own_numbers
        # What is wrong with send_sms's settings, if anything: no number can be judged for a text.
        self.texting_problem = texting_problem


class _Check:
    """Collects problems while a flow is read, so that one pass names all of them."""

    def __init__(self, policy: Policy | None) -> None:
        self.policy = policy
        self.problems: list[str] = []

    def problem(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def mapping(self, value: object, where: str) -> Mapping[str, Any]:
        if isinstance(value, dict):
            return value
        self.problem(where, "must be an object")
        return {}

    def only(self, value: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str
             ) -> None:
        for key in sorted(set(value) - set(allowed)):
            self.problem(where, f"unknown key '{key[:40]}'")

    def text(self, value: object, where: str, limit: int = MAX_SAY) -> str | None:
        # As the document will hold it: a text of characters XML cannot hold says nothing.
        if isinstance(value, str) and xml_text(value).strip() and len(value) <= limit:
            return value if self.not_reserved(value, where) else None
        self.problem(where, f"must be text of 1 to {limit:,} characters")
        return None

    def not_reserved(self, value: str, where: str) -> bool:
        if CALLER_SLOT in xml_text(value):  # as the document will hold it
            self.problem(where, f"contains '{CALLER_SLOT}', which the app reserves")
            return False
        return True

    def integer(self, value: object, where: str, low: int, high: int, default: int) -> int:
        if value is None:
            return default
        if type(value) is int and low <= value <= high:
            return value
        self.problem(where, f"must be a whole number from {low} to {high}")
        return default

    def number(self, value: object, where: str, use: str | None = None) -> str | None:
        """A number as written; `use` "call" (rung: make_call's policy) or "text" (texted:
        send_sms's), or None (only compared with callers' and called numbers)."""
        if not isinstance(value, str):
            self.problem(where, "must be a phone number in E.164 format, like +14155550100")
            return None
        if self.policy is None:  # judged already: the flow's check stamp vouches for it
            return value
        from shared.outbound import numbers

        try:
            parsed = numbers.parse_e164(value, where)
            if use == "call":
                numbers.check_destination(parsed, self.policy.allowed_countries)
            elif use == "text" and self.policy.texting_problem:
                self.problem(where, f"cannot be judged: {self.policy.texting_problem}")
                return None
            elif use == "text":
                numbers.check_destination(parsed, self.policy.sms_allowed_countries,
                                          "Messages", "SMS_ALLOWED_COUNTRIES")
            if use is not None:
                numbers.check_not_own(parsed, self.policy.own_numbers,
                                      "TWILIO_PHONE_NUMBER, SMS_SENDERS")
        except ValueError as error:  # InvalidNumber, ForbiddenDestination
            self.problem(where, str(error).replace(f"'{where}' ", ""))
            return None
        if parsed.e164 != value:  # so that a stamped flow, built without parsing, is the same
            self.problem(where, f"must be written as {parsed.e164}")
            return None
        return parsed.e164


def check(data: object, policy: Policy | None) -> Flow:
    """The flow `data` (a call-flow file's JSON) describes; raises FlowProblems naming every
    problem. With no policy, its numbers are taken as they are written: only for a flow whose
    check stamp says the full check passed it (shared.common.stamp)."""
    c = _Check(policy)
    root = c.mapping(data, "the flow")
    c.only(root, {"start", "by_number", "blocked_callers", "hours", "steps", "$schema",
                  "description"}, "the flow")
    raw_steps = c.mapping(root.get("steps"), "steps")
    if not raw_steps and "steps" in root:
        c.problem("steps", "must name at least one step")
    steps = {name: _step(c, name, raw) for name, raw in raw_steps.items()}
    names = set(steps)

    def ref(value: object, where: str) -> str:
        if isinstance(value, str) and value in names:
            return value
        c.problem(where, f"names no step ('{str(value)[:40]}')" if value is not None
                  else "is required: the name of a step")
        return ""

    start = ref(root.get("start"), "start")
    by_number = {}
    for called, step in c.mapping(root.get("by_number", {}), "by_number").items():
        number = c.number(called, f"by_number '{called[:20]}'")
        if number:
            by_number[number] = ref(step, f"by_number '{called[:20]}'")
    blocked = root.get("blocked_callers", [])
    if not isinstance(blocked, list):
        c.problem("blocked_callers", "must be a list of phone numbers")
        blocked = []
    blocked_callers = frozenset(
        n for i, raw in enumerate(blocked)
        if (n := c.number(raw, f"blocked_callers[{i}]"))
    )
    hours = _hours(c, root["hours"], ref) if "hours" in root else None
    for step in steps.values():
        where = f"step '{step.name}'"
        if step.menu:
            for digits, target in step.menu.options.items():
                ref(target, f"{where} menu option '{digits}'")
            ref(step.menu.otherwise, f"{where} menu otherwise")
        if step.dial:
            ref(step.dial.otherwise, f"{where} dial otherwise")
        if step.next is not None:
            ref(step.next, f"{where} next")
        _not_answered_here(c, step, by_number)
    if _no_next_loop(c, steps):  # else the same loop, named once
        _documents_fit(c, steps)
        _no_unattended_loop(c, steps)
    if c.problems:
        raise FlowProblems(c.problems)
    return Flow(start=start, steps=steps, by_number=by_number, blocked_callers=blocked_callers,
                hours=hours, documents={})


def _step(c: _Check, name: str, raw: object) -> Step:
    where = f"step '{name[:40]}'"
    if not _STEP_NAME.fullmatch(name):
        c.problem(where, "a step name is 1 to 64 letters, digits, _ or -")
    step = c.mapping(raw, where)
    c.only(step, STEP_KEYS, where)
    actions = [a for a in ACTIONS if a in step and not (a == "next" and "record" in step)]
    if len(actions) != 1:
        c.problem(where, f"must do exactly one of {', '.join(ACTIONS)} (it does "
                         f"{', '.join(actions) or 'none'}); only record may be followed by next")
    say = c.text(step["say"], f"{where} say") if "say" in step else None
    play = None
    if "play" in step:
        url = step["play"]
        if (not _https_url(url) or len(url) > 2000
                or any(char.isspace() or not char.isprintable() for char in url)):
            c.problem(f"{where} play", "must be an https URL Twilio can fetch (spaces and "
                      "control characters escaped)")
        elif c.not_reserved(url, f"{where} play"):
            play = url
    pause = (c.integer(step["pause"], f"{where} pause", 1, MAX_PAUSE, 1)
             if "pause" in step else None)
    for flag in ("hangup", "reject"):
        if flag in step and step[flag] is not True:
            c.problem(f"{where} {flag}", "must be true")
    return Step(
        name=name, say=say, play=play, pause=pause,
        menu=_menu(c, step["menu"], where) if "menu" in step else None,
        dial=_dial(c, step["dial"], where) if "dial" in step else None,
        record=_record(c, step["record"], where) if "record" in step else None,
        next=step["next"] if isinstance(step.get("next"), str) else (
            _bad_next(c, where) if "next" in step else None),
        hangup=step.get("hangup") is True,
        reject=step.get("reject") is True,
    )


def _bad_next(c: _Check, where: str) -> str:
    c.problem(f"{where} next", "must be the name of a step")
    return ""


def _menu(c: _Check, raw: object, where: str) -> Menu:
    where = f"{where} menu"
    menu = c.mapping(raw, where)
    c.only(menu, {"prompt", "options", "timeout_seconds", "attempts", "otherwise", "speech"}, where)
    options = c.mapping(menu.get("options"), f"{where} options")
    speech = menu.get("speech", False)
    if not isinstance(speech, bool):
        c.problem(f"{where} speech", "must be true or false")
        speech = False
    if not options:
        c.problem(f"{where} options", "must name at least one option")
    heard: dict[str, str] = {}  # a spoken option as the caller's speech is compared with it
    for key in options:
        if "#" in key:
            c.problem(f"{where} option '{key[:20]}'", "# ends what the caller types, so no "
                      "caller can choose it: use 0-9 and *")
        elif KEYPAD.fullmatch(key):
            continue
        elif not (speech and key.strip() and len(key) <= 40):
            c.problem(f"{where} option '{key[:20]}'", "must be 1 to 8 keypad keys (0-9 and *)"
                      " (or, with speech, a word)")
        elif spoken(key) != key.lower():
            c.problem(f"{where} option '{key[:20]}'", "no caller's speech can match it: write "
                      f"it as '{spoken(key)[:20]}' (speech is compared without a final . ! "
                      "or ?, the spaces around it and case, with single spaces inside)")
        elif spoken(key) in heard:
            c.problem(f"{where} option '{key[:20]}'", f"is the same spoken word as option "
                      f"'{heard[spoken(key)][:20]}'")
        else:
            heard[spoken(key)] = key
    return Menu(
        prompt=c.text(menu.get("prompt"), f"{where} prompt") or "",
        options={k: v for k, v in options.items()},
        timeout_seconds=c.integer(menu.get("timeout_seconds"), f"{where} timeout_seconds",
                                  *GATHER_TIMEOUT, 5),
        attempts=c.integer(menu.get("attempts"), f"{where} attempts", 1, MAX_ATTEMPTS, 3),
        otherwise=menu.get("otherwise") if isinstance(menu.get("otherwise"), str) else "",
        speech=speech,
    )


def spoken(text: str) -> str:
    """What a caller said (Twilio's SpeechResult) or a spoken menu option, as the two are
    compared: without a final . ! or ?, the spaces around it and case, single spaces inside."""
    return " ".join(text.rstrip().rstrip(".!?").split()).lower()


def _each_once(c: _Check, numbers: tuple[str, ...], where: str, what: str) -> None:
    for number in sorted({n for n in numbers if numbers.count(n) > 1}):
        c.problem(where, f"lists {number} more than once: each is {what} once a call")


def _dial(c: _Check, raw: object, where: str) -> Dial:
    where = f"{where} dial"
    dial = c.mapping(raw, where)
    c.only(dial, {"to", "ring", "timeout_seconds", "otherwise", "caller_id"}, where)
    to = dial.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not 1 <= len(to) <= MAX_DIALED:
        c.problem(f"{where} to", f"must list 1 to {MAX_DIALED} phone numbers or client:NAME "
                                 "browsers")
        to = []
    numbers = tuple(n for i, raw_n in enumerate(to) if (n := _dialed(c, raw_n, f"{where} to[{i}]")))
    _each_once(c, numbers, f"{where} to", "rung")
    ring = dial.get("ring", "one_by_one")
    if ring not in RINGS:
        c.problem(f"{where} ring", "must be one_by_one or all_at_once")
    caller_id = dial.get("caller_id")
    if caller_id is not None:
        caller_id = c.number(caller_id, f"{where} caller_id")
        if caller_id and c.policy is not None and caller_id not in c.policy.caller_ids:
            c.problem(f"{where} caller_id", "must be one of the numbers in CALLER_IDS or "
                                            "TWILIO_PHONE_NUMBER")
    return Dial(
        to=numbers,
        ring=ring if ring in RINGS else "one_by_one",
        timeout_seconds=c.integer(dial.get("timeout_seconds"), f"{where} timeout_seconds",
                                  *DIAL_TIMEOUT, 20),
        otherwise=dial.get("otherwise") if isinstance(dial.get("otherwise"), str) else "",
        caller_id=caller_id,
    )


def _dialed(c: _Check, value: object, where: str) -> str | None:
    """A number to ring (make_call's policy), or a browser: `client:NAME`, the identity the
    console's softphone signed in with (shared.browsercalls)."""
    if isinstance(value, str) and value.startswith(CLIENT_PREFIX):
        if is_identity(value[len(CLIENT_PREFIX):]):
            return value
        c.problem(where, "must name a browser as client: followed by letters, digits and "
                         "underscore (at most 121)")
        return None
    return c.number(value, where, "call")


def _record(c: _Check, raw: object, where: str) -> Record:
    where = f"{where} record"
    record = c.mapping(raw, where)
    c.only(record, {"max_seconds", "transcribe", "notify_sms"}, where)
    transcribe = record.get("transcribe", False)
    if not isinstance(transcribe, bool):
        c.problem(f"{where} transcribe", "must be true or false")
        transcribe = False
    max_seconds = c.integer(record.get("max_seconds"), f"{where} max_seconds", 1,
                            MAX_RECORD_SECONDS, 120)
    if transcribe and max_seconds > MAX_TRANSCRIBED_SECONDS:
        c.problem(f"{where} max_seconds", f"must be at most {MAX_TRANSCRIBED_SECONDS} with "
                  "transcribe: Twilio transcribes recordings of 2 to 120 seconds only")
    notify = record.get("notify_sms", [])
    if not isinstance(notify, list):
        c.problem(f"{where} notify_sms", "must be a list of phone numbers")
        notify = []
    notify_sms = tuple(n for i, raw_n in enumerate(notify)
                       if (n := c.number(raw_n, f"{where} notify_sms[{i}]", "text")))
    _each_once(c, notify_sms, f"{where} notify_sms", "texted")
    return Record(max_seconds=max_seconds, transcribe=transcribe, notify_sms=notify_sms)


def _https_url(url: object) -> bool:
    """An https URL with a host (and a port, if any, that is one)."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        return bool(parts and parts.scheme == "https" and parts.hostname and parts.port != 0)
    except ValueError:  # "https://[::1", a port of 99999
        return False


def _hours(c: _Check, raw: object, ref: Any) -> Hours | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    hours = c.mapping(raw, "hours")
    c.only(hours, {"timezone", "open", "closed"}, "hours")
    timezone = hours.get("timezone")
    try:
        # The system's own files in its zone folder are not zones: `localtime` is whatever
        # zone the machine is set to (UTC on Azure, not the one the flow was checked on),
        # `right/` zones count leap seconds, `posix/` ones duplicate the rest.
        if (not isinstance(timezone, str) or not timezone or timezone in NOT_ZONES
                or timezone.startswith(("posix/", "right/"))):
            raise ValueError
        ZoneInfo(timezone)
    except (ValueError, OSError, ZoneInfoNotFoundError):  # OSError: "America", a folder
        c.problem("hours timezone", f"'{str(timezone)[:40]}' is not an IANA time zone, like "
                                    "America/New_York")
        timezone = None
    opened: dict[int, tuple[tuple[datetime.time, datetime.time | None], ...]] = {}
    for day, ranges in c.mapping(hours.get("open"), "hours open").items():
        if day not in DAYS:
            c.problem(f"hours open '{day[:10]}'", f"must be one of {', '.join(DAYS)}")
            continue
        if not isinstance(ranges, list):
            c.problem(f"hours open {day}", "must be a list of ranges like \"09:00-17:00\"")
            continue
        spans = []
        for text in ranges:
            match = _RANGE.fullmatch(text) if isinstance(text, str) else None
            begin = end = None
            if match:
                begin = datetime.time(int(match[1]), int(match[2]))
                end = None if match[3] == "24" else datetime.time(int(match[3]), int(match[4]))
                if match[3] == "24" and match[4] != "00":
                    match = None
            if not match or (end is not None and end <= begin):
                c.problem(f"hours open {day}", f"'{str(text)[:20]}' is not a range like "
                                               "\"09:00-17:00\" (start before end)")
                continue
            spans.append((begin, end))
        opened[DAYS.index(day)] = tuple(spans)
    closed = ref(hours.get("closed"), "hours closed")
    if timezone is None:
        return None
    return Hours(timezone=timezone, open=opened, closed=closed)


def _not_answered_here(c: _Check, step: Step, by_number: Mapping[str, str]) -> None:
    """The numbers `by_number` names are numbers this flow answers: ringing or texting one of
    them comes back to it."""
    where = f"step '{step.name}'"
    rung = step.dial.to if step.dial else ()
    texted = step.record.notify_sms if step.record else ()
    for number in [*rung, *texted]:
        if number in by_number:
            c.problem(where, f"{number} is one of the numbers this flow answers (by_number): a "
                             "call or text to it would come back to this app")


def _no_next_loop(c: _Check, steps: Mapping[str, Step]) -> bool:
    """A chain of steps that only go on to the next (no menu, dial or record waits for the caller)
    must end: a cycle of them would redirect forever. True when none loops."""
    passing = {name: s.next for name, s in steps.items()
               if s.next and not (s.menu or s.dial or s.record)}
    return _loop_free(c, passing, "its next steps loop back to it with no way out")


def _no_unattended_loop(c: _Check, steps: Mapping[str, Step]) -> None:
    """Nor may the way a call goes on without the caller (a menu's `otherwise` after silence, a
    dial's `otherwise` when nobody answers, a recording's `next`) come back to where it was: a
    silent caller would hear the menu again and again, the same people would ring round after
    round, and the call would be billed until Twilio's four-hour limit."""
    unattended = {name: s.menu.otherwise if s.menu else s.dial.otherwise if s.dial else s.next
                  for name, s in steps.items()}
    _loop_free(c, {name: then for name, then in unattended.items() if then},
               "without the caller pressing or saying anything (silence, nobody answering, a "
               "recording's next), the call comes back to it and would go round forever")


def _loop_free(c: _Check, following: Mapping[str, str], why: str) -> bool:
    """Whether the steps, each going on to the one `following` names, never come back to one
    they passed; each loop is a problem naming its path. Each step is followed once (a long
    chain costs its length, not its length squared)."""
    ends: set[str] = set()  # steps whose chain is known to end
    looped = False
    for first in following:
        path: dict[str, int] = {}  # this walk's steps, in order
        name: str | None = first
        while name in following and name not in path and name not in ends:
            path[name] = len(path)
            name = following[name]
        if name in path:
            loop = list(path)[path[name]:]
            looped = True
            c.problem(f"step '{name}'", f"{why}: " + " -> ".join([*loop, name]))
        ends |= set(path)
    return not looped


def _documents_fit(c: _Check, steps: Mapping[str, Step]) -> None:
    """Each step's TwiML document (its texts and those of the steps it goes straight `next` to,
    shared.callflows.walk) fits in what Twilio takes. Chains end (checked before), and each
    step's total is worked out once."""
    total: dict[str, int] = {}

    def own(step: Step) -> int:
        texts = [step.say, step.play, step.menu.prompt if step.menu else None]
        return STEP_MARKUP + sum(len(t.translate(_ESCAPED).encode()) for t in texts if t)

    for first in steps:
        chain: list[Step] = []
        name: str | None = first
        while name in steps and name not in total:
            step = steps[name]
            chain.append(step)
            name = step.next if step.next and not (step.menu or step.dial or step.record) \
                else None
        after = total.get(name or "", 0)
        for step in reversed(chain):
            after = total[step.name] = own(step) + after
        if total[first] > MAX_DOCUMENT_BYTES:
            c.problem(f"step '{first}'", f"its TwiML would take about {total[first]:,} bytes "
                      f"(with the steps it goes next to); Twilio takes documents of at most "
                      f"64 kB, so keep it under {MAX_DOCUMENT_BYTES:,}")
