"""How a call walks its flow: the TwiML for each step, and what Twilio's answer to it means.

`start` answers voice_url (blocked callers, closed hours, the first step); `resume` answers the
`call_flow` webhook, which every URL in that TwiML names (`<Gather action>`, `<Dial action>`,
`<Record action>`, `<Redirect>`). The state a step needs (its name, the menu attempt, the next
number to ring) travels in that URL's query string, which Twilio signs; anything that does not
name a step of the flow, or a flow that was refused, gets the safe answer: an apology and a
hang-up, never a dial and never a 500.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus, urlencode

from shared import telemetry
from shared.callflows import loading
from shared.callflows.flow import CALLER_SLOT, KEYPAD, Flow, FlowProblems, Step, spoken
from shared.common import logs, redact, routes
from shared.common.client_names import CLIENT_PREFIX
from shared.common.text import small_count
from shared.webhooks import Webhook, twiml

logger = logs.get_logger(__name__)

FUNCTION = "call_flow"
RECORDING_CALLBACK = "recording_status"
# DialCallStatus values that mean the caller talked to someone: the call ends there.
CONNECTED = frozenset({"completed", "answered"})


def _now() -> float:
    """Seconds since the epoch: what the flow's hours are judged at (a float, not a datetime:
    the hours' memo needs only its minute, and building a datetime per call cost a warm webhook
    1.4 % through the host, BENCHMARKS.md)."""
    return time.time()


def _flow(hook: Webhook, function: str) -> Flow | None:
    """The call's flow, or None when it was refused: every call then gets the apology, counted
    as a failure of `function` on each call (the problems are logged once per process). None
    too when CALL_FLOW is unset (a call that began under a flow the app no longer has)."""
    if not hook.settings.call_flow:
        return None
    found = loading.flow(hook.settings.call_flow, hook.settings.call_policy)
    if isinstance(found, FlowProblems):
        telemetry.count_webhook_failure(function, "call-flow")
        return None
    return found


class _Twiml:
    """One TwiML document being built for a step, with the app's URLs and voice settings."""

    def __init__(self, hook: Webhook) -> None:
        from twilio.twiml.voice_response import VoiceResponse

        self.response = VoiceResponse()
        self.settings = hook.settings
        self.origin = hook.settings.trusted_origin or ""

    def url(self, route: str, **state: object) -> str:
        """The app's own route, at the trusted origin (a path alone where there is none locally:
        Twilio resolves it against the URL it requested, the one it signed)."""
        query = urlencode({k: v for k, v in state.items() if v is not None})
        return f"{self.origin}{routes.path(route)}" + (f"?{query}" if query else "")

    def say(self, text: str, parent: Any = None) -> None:
        options = {}
        if self.settings.voice_name:
            options["voice"] = self.settings.voice_name
        if self.settings.voice_language:
            options["language"] = self.settings.voice_language
        (parent or self.response).say(twiml.xml_text(text), **options)

    def xml(self) -> str:
        return str(self.response.to_xml())


def apology(hook: Webhook) -> str:
    settings = hook.settings
    return twiml.say(twiml.APOLOGY, settings.voice_name, settings.voice_language, hang_up=True)


def start(hook: Webhook) -> str:
    """voice_url with a call flow: refuse a blocked caller, send callers outside the open hours
    to the closed step, else play the first step."""
    flow = _flow(hook, "voice_url")
    if flow is None:
        return apology(hook)
    caller = hook.param("From") or ""
    if caller in flow.blocked_callers:
        logger.info("voice_url from=%s outcome=rejected reason=blocked caller",
                    redact.phone_number(caller))
        doc = _Twiml(hook)
        doc.response.reject()
        return doc.xml()
    name = flow.first_step(hook.param("To"))
    if flow.hours is not None and not flow.hours.is_open(_now()):
        name = flow.hours.closed
    return _render(hook, flow, flow.steps[name])


def resume(hook: Webhook) -> str:
    """The call_flow webhook: what Twilio's answer to a step's TwiML leads to."""
    flow = _flow(hook, FUNCTION)
    state = hook.query
    step = flow.steps.get(state.get("step", "")) if flow else None
    if flow is None or step is None:
        return _safe(hook, "no such step")
    after = state.get("after")
    if after == "menu" and step.menu:
        return _after_menu(hook, flow, step, _count(state.get("attempt"), step.menu.attempts))
    if after == "dial" and step.dial:
        # one_by_one moves on one number at a time; all_at_once rings them all from the first
        last = len(step.dial.to) - 1 if step.dial.ring == "one_by_one" else 0
        return _after_dial(hook, flow, step, _count(state.get("index"), last, 0))
    if after == "record" and step.record:
        return _go(hook, flow, step.next) if step.next else _hangup(hook)
    if after is None and any(s.record and s.next == step.name for s in flow.steps.values()):
        return _render(hook, flow, step)  # a voicemail's <Redirect> when nothing was recorded
    return _safe(hook, f"unexpected '{(after or '')[:20]}' for this step")


def _count(raw: str | None, highest: int, lowest: int = 1) -> int | None:
    """A small count from the query (signed by Twilio, but still checked): None when it is not
    one this flow could have written."""
    value = small_count(raw, 3)
    return value if value is not None and lowest <= value <= highest else None


def _safe(hook: Webhook, reason: str) -> str:
    logger.warning("call_flow CallSid=%s outcome=hung-up reason=%s",
                   redact.sid(hook.param("CallSid")), reason)
    return apology(hook)


def _hangup(hook: Webhook) -> str:
    doc = _Twiml(hook)
    doc.response.hangup()
    return doc.xml()


def _go(hook: Webhook, flow: Flow, name: str) -> str:
    return _render(hook, flow, flow.steps[name])


def _after_menu(hook: Webhook, flow: Flow, step: Step, attempt: int | None) -> str:
    menu = step.menu
    assert menu is not None
    if attempt is None:
        return _safe(hook, "menu attempt out of range")
    pressed = (hook.param("Digits") or "").strip()
    said = spoken(hook.param("SpeechResult") or "")
    target = menu.options.get(pressed)
    if target is None and said and menu.speech:
        target = next((t for k, t in menu.options.items() if k.lower() == said), None)
    if target is not None:
        return _go(hook, flow, target)
    if attempt < menu.attempts:
        return _render(hook, flow, step, attempt=attempt + 1, prelude=False)
    return _go(hook, flow, menu.otherwise)


def _after_dial(hook: Webhook, flow: Flow, step: Step, index: int | None) -> str:
    dial = step.dial
    assert dial is not None
    if index is None:
        return _safe(hook, "dial index out of range")
    status = hook.param("DialCallStatus") or ""
    if status in CONNECTED:
        telemetry.count_flow_outcome("dial-answered")
        return _hangup(hook)  # the caller talked to someone: nothing more rings, no voicemail
    if dial.ring == "one_by_one" and index + 1 < len(dial.to):
        return _render(hook, flow, step, index=index + 1, prelude=False)
    telemetry.count_flow_outcome("dial-unanswered")
    return _go(hook, flow, dial.otherwise)


def _render(
    hook: Webhook, flow: Flow, step: Step, attempt: int = 1, index: int = 0, prelude: bool = True
) -> str:
    """The step's TwiML. The same step (with the same attempt, number, origin and voice) gives
    the same document, so each is built once per process and reused; a voicemail's then gets
    this call's caller in its callback URLs."""
    key = (step.name, attempt, index, prelude, hook.settings.trusted_origin,
           hook.settings.voice_name, hook.settings.voice_language)
    pieces = flow.documents.get(key)
    if pieces is None:
        if len(flow.documents) >= MAX_DOCUMENTS:
            flow.documents.clear()
        built = _build(hook, flow, step, attempt, index, prelude)
        pieces = flow.documents[key] = tuple(built.split(CALLER_SLOT))
    if len(pieces) == 1:
        return pieces[0]
    # A voicemail's: the one value that differs from call to call, in its callback URLs' query.
    return _query_value(hook.param("From") or "").join(pieces)


def _query_value(text: str) -> str:
    """`text` as urlencode writes a query value (letters, digits, %XX: nothing XML must
    escape). A phone number, what callers almost always are, needs only its `+` escaped;
    quote_plus, for anything else, was half of a voicemail answer's time."""
    if text[:1] == "+" and text[1:].isdecimal() and text.isascii():
        return "%2B" + text[1:]
    return quote_plus(text)


# The recording callbacks' `caller` (a recording callback does not say who called, and the
# voicemail's text does): in the cached document, CALLER_SLOT stands for it.
MAX_DOCUMENTS = 1024


def _build(
    hook: Webhook, flow: Flow, step: Step, attempt: int, index: int, prelude: bool
) -> str:
    doc = _Twiml(hook)
    seen: set[str] = set()
    while True:
        seen.add(step.name)
        if prelude:
            if step.say:
                doc.say(step.say)
            if step.play:
                doc.response.play(step.play)
            if step.pause:
                doc.response.pause(length=step.pause)
        if step.next and not (step.menu or step.dial or step.record):
            # Go straight on: the next step's TwiML in the same document (the check refused
            # loops of next; `seen` guards all the same).
            if step.next in seen:
                doc.response.hangup()
                break
            step, prelude = flow.steps[step.next], True
            continue
        _action(doc, step, attempt, index)
        break
    return doc.xml()


def _action(doc: _Twiml, step: Step, attempt: int, index: int) -> None:
    response = doc.response
    if step.menu:
        menu = step.menu
        action = doc.url(FUNCTION, step=step.name, after="menu", attempt=attempt)
        options: dict[str, Any] = {"action": action, "method": "POST",
                                   "timeout": menu.timeout_seconds,
                                   "input": "dtmf speech" if menu.speech else "dtmf"}
        if all(KEYPAD.fullmatch(k) for k in menu.options):
            options["num_digits"] = max(len(k) for k in menu.options)
        gather = response.gather(**options)
        doc.say(menu.prompt, gather)
        response.redirect(action, method="POST")  # silence: Twilio goes on to the next verb
    elif step.dial:
        dial = step.dial
        options = {"action": doc.url(FUNCTION, step=step.name, after="dial", index=index),
                   "method": "POST", "timeout": dial.timeout_seconds}
        if dial.caller_id:
            options["caller_id"] = dial.caller_id
        verb = response.dial(**options)
        for number in (dial.to if dial.ring == "all_at_once" else dial.to[index:index + 1]):
            if number.startswith(CLIENT_PREFIX):  # a browser: the console's softphone
                verb.client(number[len(CLIENT_PREFIX):])
            else:
                verb.number(number)
    elif step.record:
        record = step.record
        options = {
            "action": doc.url(FUNCTION, step=step.name, after="record"),
            "method": "POST",
            "max_length": record.max_seconds,
            "finish_on_key": "#",
            "play_beep": True,
            "recording_status_callback": doc.url(RECORDING_CALLBACK, step=step.name,
                                                 caller=CALLER_SLOT) + routes.CALLBACK_RETRIES,
            "recording_status_callback_event": "completed",
            "recording_status_callback_method": "POST",
        }
        if record.transcribe:
            options["transcribe"] = True
            options["transcribe_callback"] = doc.url(RECORDING_CALLBACK, step=step.name,
                                                     caller=CALLER_SLOT) + routes.CALLBACK_RETRIES
        response.record(**options)
        # An empty recording skips the action (Twilio's behaviour): go on to `next` here.
        if step.next:
            response.redirect(doc.url(FUNCTION, step=step.next), method="POST")
        else:
            response.hangup()
    elif step.reject:
        response.reject()
    else:
        response.hangup()


def describe(steps: Mapping[str, Step]) -> list[str]:
    """One line per step, for the check command's report."""
    return [f"{name}: {_kind(step)}" for name, step in steps.items()]


def _kind(step: Step) -> str:
    for action in ("menu", "dial", "record"):
        if getattr(step, action):
            return action + (f" then {step.next}" if action == "record" and step.next else "")
    if step.next:
        return f"next {step.next}"
    return "reject" if step.reject else "hangup"
