"""Walk a call flow as Twilio would: after the voice webhook's answer, follow the URLs its TwiML
names, one choice of the caller's (or of Twilio's) per step, each request signed.

`python -m devhost.simulate voice --walk 1,no-answer,no-answer,record:42:Please call me` starts
a call, presses 1, lets both people rung not answer, then leaves a 42-second voicemail (and
sends the recording's and its transcription's callbacks). The choices, in the order the TwiML
asks for them:

- at a `<Gather>`: digits (`1`, `2#`) or `silence`;
- at a `<Dial>`: the DialCallStatus (`completed`, `answered`, `busy`, `no-answer`, `failed`,
  `canceled`);
- at a `<Record>`: `record:SECONDS[:TRANSCRIPTION]`, or `empty` (the caller said nothing:
  Twilio skips the action and goes on);
- a `<Redirect>` alone is followed without a choice; `<Hangup>` and `<Reject>` end the walk.

URLs in the TwiML are the app's public ones (PUBLIC_BASE_URL): they are signed as they are and
sent to the local host instead, as a tunnel would forward them.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

DIAL_STATUSES = ("completed", "answered", "busy", "no-answer", "failed", "canceled")
MAX_STEPS = 50  # a walk that goes on longer than this is a loop


@dataclass(frozen=True)
class Request:
    """One request Twilio would send: where it goes, what it signs, its extra fields."""

    url: str
    sign_url: str
    params: dict[str, str]
    note: str


class WalkError(ValueError):
    """A choice that does not fit the TwiML in hand."""


def _sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def local(url: str, local_origin: str) -> tuple[str, str]:
    """(where to send it, what Twilio signed) for a URL from the TwiML."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if not parts.scheme:  # relative: Twilio resolves it against the URL it called
        return local_origin + path, local_origin + path
    return local_origin + path, url.split("#")[0]


def next_requests(twiml: str, choices: list[str], local_origin: str) -> list[Request]:
    """The requests Twilio sends after this TwiML, taking the choices it needs from `choices`
    (consumed); [] when the call ends here."""
    root = ET.fromstring(twiml)  # noqa: S314 - the local app's own answer, in a dev tool
    gather, dial, record = root.find("Gather"), root.find("Dial"), root.find("Record")
    redirect = root.find("Redirect")
    if gather is not None:
        choice = _take(choices, "digits or silence, for the menu")
        if choice == "silence":
            if redirect is None:
                return []
            url, signed = local(redirect.text or "", local_origin)
            return [Request(url, signed, {}, "silence: the <Redirect> after <Gather>")]
        url, signed = local(gather.get("action") or "", local_origin)
        return [Request(url, signed, {"Digits": choice}, f"pressed {choice}")]
    if dial is not None:
        status = _take(choices, "a DialCallStatus, for the dial")
        if status not in DIAL_STATUSES:
            raise WalkError(f"'{status}' is not a DialCallStatus ({', '.join(DIAL_STATUSES)})")
        url, signed = local(dial.get("action") or "", local_origin)
        fields = {"DialCallStatus": status, "DialCallSid": _sid("CA")}
        if status in ("completed", "answered"):
            fields["DialCallDuration"] = "30"
        return [Request(url, signed, fields, f"the dial ended {status}")]
    if record is not None:
        return _after_record(record, redirect, _take(choices, "record:SECONDS or empty"),
                             local_origin)
    if redirect is not None:
        url, signed = local(redirect.text or "", local_origin)
        return [Request(url, signed, {}, "<Redirect>")]
    return []


def _after_record(
    record: ET.Element, redirect: ET.Element | None, choice: str, local_origin: str
) -> list[Request]:
    if choice == "empty":
        if redirect is None:
            return []
        url, signed = local(redirect.text or "", local_origin)
        return [Request(url, signed, {}, "an empty recording: the <Redirect> after <Record>")]
    kind, _, rest = choice.partition(":")
    seconds, _, words = rest.partition(":")
    if kind != "record" or not seconds.isdigit():
        raise WalkError(f"'{choice}' is not record:SECONDS[:TRANSCRIPTION] or empty")
    recording = _sid("RE")
    requests = []
    url, signed = local(record.get("action") or "", local_origin)
    requests.append(Request(url, signed, {"RecordingSid": recording, "RecordingDuration": seconds,
                                          "RecordingUrl": f"https://api.twilio.com/Recordings/"
                                                          f"{recording}"},
                            f"recorded {seconds} s"))
    if record.get("recordingStatusCallback"):
        url, signed = local(record.get("recordingStatusCallback") or "", local_origin)
        requests.append(Request(url, signed, {"RecordingSid": recording,
                                              "RecordingStatus": "completed",
                                              "RecordingDuration": seconds},
                                "the recording's status callback"))
    if record.get("transcribeCallback") and words:
        url, signed = local(record.get("transcribeCallback") or "", local_origin)
        requests.append(Request(url, signed, {"RecordingSid": recording,
                                              "TranscriptionSid": _sid("TR"),
                                              "TranscriptionStatus": "completed",
                                              "TranscriptionText": words},
                                "the transcription's callback"))
    return requests


def _take(choices: list[str], wanted: str) -> str:
    if not choices:
        raise WalkError(f"the TwiML asks for {wanted}, and --walk has no more choices")
    return choices.pop(0)


def walk(
    first_twiml: str,
    choices: Sequence[str],
    local_origin: str,
    send: Callable[[Request], tuple[int, str]],
    show: Callable[[str], None],
) -> int:
    """Follow the call from `first_twiml`; `send` posts a request (signed as Twilio would, with
    the call's own fields) and gives (status, body). 0 when the walk ended where the TwiML did
    with every choice used, 1 otherwise."""
    left = list(choices)
    twiml = first_twiml
    for _ in range(MAX_STEPS):
        try:
            requests = next_requests(twiml, left, local_origin)
        except (WalkError, ET.ParseError) as error:
            show(f"walk: {error}")
            return 1
        if not requests:
            if left:
                show(f"walk: the call ended with choices left over: {','.join(left)}")
                return 1
            show("walk: the call ended.")
            return 0
        follow = None
        for request in requests:
            status, body = send(request)
            show(f"--> {request.note}: POST {request.url}\nHTTP {status}")
            if body:
                show(body)
            if status >= 300:
                return 1
            if follow is None and body.lstrip().startswith("<?xml"):
                follow = body  # the action's TwiML; the callbacks answer 204
        if follow is None:
            return 0
        twiml = follow
    show(f"walk: more than {MAX_STEPS} steps: a loop?")
    return 1
