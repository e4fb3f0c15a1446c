"""Call flows (issue 21) through the real worker: voice_url starts the example flow, and every
URL its TwiML names is followed as Twilio follows it (a signed POST with Twilio's parameters),
branch by branch; the check refuses each bad flow by name; recordings are kept once."""

from __future__ import annotations

import datetime
import json
import logging
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from conftest import ACCOUNT_SID, AUTH_TOKEN, REPO, run_app, signature

from devhost.worker_host import HostResponse, WorkerHost
from shared.callflows import loading, walk
from shared.callflows.flow import FlowProblems, Policy, check
from shared.common import stamp
from shared.webhooks.settings import DEFAULT_VOICE_GREETING
from shared.webhooks.twiml import APOLOGY

PUBLIC = "https://myapp.azurewebsites.net"
EXAMPLE = REPO / "flows" / "calls.example.json"
CALLER = "+14155550123"
OUR_NUMBER = "+14155550100"  # whom the example rings first and texts a voicemail to
APP_NUMBER = "+14155550142"  # TWILIO_PHONE_NUMBER: the number called, the caller ID
CALL_SID = "CA" + "7" * 32
POLICY = Policy(allowed_countries=frozenset({"US"}), caller_ids=frozenset({OUR_NUMBER}),
                sms_allowed_countries=frozenset({"US"}), own_numbers=frozenset({APP_NUMBER}))
# Monday 10:00 and Sunday 10:00 in New York (the example's hours: weekdays 9 to 5).
OPEN = datetime.datetime(2026, 12, 7, 15, 0, tzinfo=datetime.UTC)
CLOSED = datetime.datetime(2026, 12, 6, 15, 0, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def flow_settings(app_settings, monkeypatch):
    app_settings.setenv("CALL_FLOW", "flows/calls.example.json")
    # The app's own number is not one of the people the example rings and texts (+14155550100,
    # +14155550101): a text to its own number would come back to it, and is refused.
    app_settings.setenv("TWILIO_PHONE_NUMBER", APP_NUMBER)
    monkeypatch.setattr(walk, "_now", OPEN.timestamp)
    # Every flow here is checked in full: a stamp a developer made in flows/ is not looked for
    # (tests/test_call_flow_stamp.py tests the stamps).
    monkeypatch.setattr(stamp, "SUFFIX", ".no-stamps-in-these-tests")
    loading.forget()
    yield app_settings
    loading.forget()


def post(host: WorkerHost, url: str, params: dict[str, str], signed: bool = True) -> HostResponse:
    """What Twilio sends to `url`: a form POST signed over the full URL and its parameters."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = signature(url, params, AUTH_TOKEN)
    return host.request("POST", url, headers=headers, body=urlencode(params), base_url=PUBLIC)


def call_params(**extra: str) -> dict[str, str]:
    return {"CallSid": CALL_SID, "AccountSid": ACCOUNT_SID, "From": CALLER, "To": APP_NUMBER,
            "CallStatus": "in-progress", "Direction": "inbound", **extra}


def twiml(response: HostResponse) -> ET.Element:
    assert response.status == 200, (response.status, response.body)
    assert response.headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.body)
    assert root.tag == "Response"
    return root


def verbs(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


def state(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC  # the trusted origin, never a header's
    assert parts.path == "/api/call_flow"
    return dict(parse_qsl(parts.query))


def start(host: WorkerHost, caller: str = CALLER) -> ET.Element:
    return twiml(post(host, f"{PUBLIC}/api/voice_url", call_params(From=caller)))


def gather_action(root: ET.Element) -> str:
    [gather] = root.iter("Gather")
    return gather.get("action") or ""


def press(host: WorkerHost, root: ET.Element, digits: str | None) -> ET.Element:
    """Twilio's answer to a <Gather>: its action with Digits, or (silence) the <Redirect>."""
    if digits is None:
        redirect = root.find("Redirect")
        assert redirect is not None
        return twiml(post(host, redirect.text or "", call_params()))
    return twiml(post(host, gather_action(root), call_params(Digits=digits)))


def dial_ends(host: WorkerHost, root: ET.Element, status: str) -> ET.Element:
    [dial] = root.iter("Dial")
    return twiml(post(host, dial.get("action") or "",
                      call_params(DialCallStatus=status, DialCallSid="CA" + "8" * 32)))


def dialled(root: ET.Element) -> list[str]:
    return [n.text or "" for n in root.iter("Number")]


# --- voice_url: the first step ---------------------------------------------------------------

def test_the_welcome_menu_says_its_text_then_gathers_one_digit(worker_host):
    root = start(worker_host)

    assert verbs(root) == ["Say", "Gather", "Redirect"]
    assert root[0].text == "Thanks for calling Contoso."
    gather = root[1]
    assert (gather.get("numDigits"), gather.get("timeout"), gather.get("input")) == ("1", "5", "dtmf")
    assert state(gather.get("action") or "") == {"step": "welcome", "after": "menu", "attempt": "1"}
    assert [say.text for say in gather] == ["For sales press 1. To leave a message press 2."]
    assert root[2].text == gather.get("action")  # silence: Twilio goes on to the Redirect


def test_a_blocked_caller_is_rejected(worker_host):
    assert verbs(start(worker_host, caller="+14155550199")) == ["Reject"]


def test_outside_the_hours_the_caller_goes_to_voicemail(worker_host, monkeypatch):
    monkeypatch.setattr(walk, "_now", CLOSED.timestamp)

    root = start(worker_host)

    assert verbs(root) == ["Say", "Record", "Redirect"]
    assert root[0].text == "Please leave a message after the tone."


def test_each_callers_voicemail_names_that_caller_though_its_document_is_reused(
    worker_host, monkeypatch
):
    monkeypatch.setattr(walk, "_now", CLOSED.timestamp)
    for caller in ("+14155550123", "+14155550124", "client:alice&x=<1>", "", "+\u0661\u0662", "+1 415", "+"):
        record = start(worker_host, caller=caller)[1]
        for callback in ("recordingStatusCallback", "transcribeCallback"):
            url = urlsplit(record.get(callback) or "")
            assert url.path == "/api/recording_status"
            assert dict(parse_qsl(url.query)).get("caller", "") == caller


def test_without_call_flow_voice_url_says_the_greeting(worker_host, app_settings):
    app_settings.delenv("CALL_FLOW")

    assert verbs(start(worker_host)) == ["Say"]


def test_a_call_whose_flow_was_unset_since_hangs_up_without_an_error(worker_host, app_settings,
                                                                      caplog):
    """A call that began under a flow, answered after CALL_FLOW was removed: the apology, and a
    warning, not an error about a flow file named ''."""
    root = start(worker_host)
    app_settings.delenv("CALL_FLOW")
    caplog.set_level(logging.INFO)

    after = press(worker_host, root, "1")

    assert verbs(after) == ["Say", "Hangup"] and after[0].text == APOLOGY
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("message", ["Your table is ready", None])
def test_a_call_the_app_placed_says_its_message_not_the_flow(worker_host, message):
    """make_call and call broadcasts point Twilio at voice_url (with `message` in the query):
    the person called hears that, never the menu or voicemail meant for people who ring in."""
    url = f"{PUBLIC}/api/voice_url" + (f"?{urlencode({'message': message})}" if message else "")
    params = call_params(Direction="outbound-api", From=APP_NUMBER, To=CALLER)

    root = twiml(post(worker_host, url, params))

    assert verbs(root) == ["Say"]
    said = root.find("Say")
    assert said is not None
    assert said.text == (message or DEFAULT_VOICE_GREETING)


# --- the menu -----------------------------------------------------------------------------------

def test_pressing_1_rings_sales_one_by_one(worker_host):
    root = press(worker_host, start(worker_host), "1")

    assert verbs(root) == ["Dial"]
    dial = root[0]
    assert dialled(root) == ["+14155550100"]
    assert dial.get("timeout") == "20" and dial.get("callerId") is None  # the caller's own number
    assert state(dial.get("action") or "") == {"step": "sales", "after": "dial", "index": "0"}


def test_pressing_2_takes_a_voicemail_that_then_says_goodbye(worker_host):
    root = press(worker_host, start(worker_host), "2")

    assert verbs(root) == ["Say", "Record", "Redirect"]
    record = root[1]
    assert (record.get("maxLength"), record.get("finishOnKey"), record.get("transcribe")) == (
        "120", "#", "true")
    assert state(record.get("action") or "") == {"step": "voicemail", "after": "record"}
    for url in (record.get("recordingStatusCallback"), record.get("transcribeCallback")):
        assert urlsplit(url).path == "/api/recording_status"
        assert url.startswith(PUBLIC)
    assert state(root[2].text or "") == {"step": "goodbye"}  # an empty recording skips the action
    after = twiml(post(worker_host, record.get("action") or "",
                       call_params(RecordingSid="RE" + "1" * 32, RecordingDuration="7")))
    assert verbs(after) == ["Say", "Hangup"] and after[0].text == "Thank you. Goodbye."
    skipped = twiml(post(worker_host, root[2].text or "", call_params()))
    assert verbs(skipped) == ["Say", "Hangup"] and skipped[0].text == "Thank you. Goodbye."


@pytest.mark.parametrize("wrong", ["9", "12", "*"])
def test_a_wrong_digit_repeats_the_prompt_without_the_welcome(worker_host, wrong):
    root = press(worker_host, start(worker_host), wrong)

    assert verbs(root) == ["Gather", "Redirect"]
    assert state(gather_action(root))["attempt"] == "2"


def test_silence_repeats_up_to_the_attempts_then_goes_to_voicemail(worker_host):
    root = start(worker_host)
    seen = []
    for _ in range(3):
        seen.append(state(gather_action(root))["attempt"] if "Gather" in verbs(root) else None)
        root = press(worker_host, root, None)

    assert seen == ["1", "2", "3"]
    assert verbs(root) == ["Say", "Record", "Redirect"]  # otherwise: voicemail, not forever


# --- dialling -------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["completed", "answered"])
def test_a_call_someone_answered_ends_there(worker_host, status):
    root = dial_ends(worker_host, press(worker_host, start(worker_host), "1"), status)

    assert verbs(root) == ["Hangup"]  # nobody else rings, no voicemail


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled"])
def test_one_by_one_rings_the_next_then_voicemail(worker_host, status):
    first = press(worker_host, start(worker_host), "1")
    second = dial_ends(worker_host, first, status)
    last = dial_ends(worker_host, second, status)

    assert dialled(second) == ["+14155550101"]
    assert state(second[0].get("action") or "")["index"] == "1"
    assert verbs(last) == ["Say", "Record", "Redirect"]  # each number rung once, then otherwise


def flow_file(tmp_path: Path, monkeypatch, flow: dict) -> None:
    (tmp_path / "flow.json").write_text(json.dumps(flow))
    monkeypatch.setattr(loading, "APP_ROOT", tmp_path)
    loading.forget()


def small_flow(**dial: object) -> dict:
    return {"start": "ring", "steps": {
        "ring": {"dial": {"to": ["+14155550100", "+14155550101"], "otherwise": "bye", **dial}},
        "bye": {"say": "Nobody is free.", "hangup": True}}}


def test_make_call_never_rings_a_number_the_flow_answers(
    worker_host, app_settings, tmp_path, monkeypatch, twilio_api, azurite_storage
):
    """A number by_number answers is the app's own: a call to it would ring the flow, which
    dials again, every leg billed. make_call (and the softphone and call broadcasts, which
    place calls through the same check) refuse it; another number is called."""
    flow_file(tmp_path, monkeypatch, {**small_flow(), "by_number": {"+14155550177": "bye"}})
    app_settings.setenv("CALL_FLOW", "flow.json")
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)

    def make_call(to: str) -> HostResponse:
        return worker_host.request("POST", "/api/make_call", base_url=PUBLIC,
                                   headers={"Content-Type": "application/json"},
                                   body=json.dumps({"to": to}))

    refused = make_call("+14155550177")
    assert refused.status == 403
    assert "by_number" in refused.json()["error"]
    assert twilio_api.creates == []
    assert make_call("+14155550123").status == 201


@pytest.mark.parametrize(("status", "then"), [("completed", ["Hangup"]),
                                               ("answered", ["Hangup"]),
                                               ("busy", ["Say", "Hangup"]),
                                               ("no-answer", ["Say", "Hangup"]),
                                               ("failed", ["Say", "Hangup"]),
                                               ("canceled", ["Say", "Hangup"])])
def test_all_at_once_rings_everyone_in_one_dial(
    worker_host, app_settings, tmp_path, monkeypatch, status, then
):
    flow_file(tmp_path, monkeypatch, small_flow(ring="all_at_once", caller_id=APP_NUMBER))
    app_settings.setenv("CALL_FLOW", "flow.json")

    root = start(worker_host)

    assert verbs(root) == ["Dial"]
    assert dialled(root) == ["+14155550100", "+14155550101"]
    assert root[0].get("callerId") == APP_NUMBER
    assert verbs(dial_ends(worker_host, root, status)) == then


@pytest.mark.parametrize("ring", ["one_by_one", "all_at_once"])
def test_a_dial_rings_browsers_beside_numbers(worker_host, app_settings, tmp_path, monkeypatch,
                                              ring):
    """`client:NAME` in a dial rings the console's softphone signed in as NAME (<Client>)."""
    flow_file(tmp_path, monkeypatch, small_flow(ring=ring, to=["client:front_desk",
                                                                "+14155550101"]))
    app_settings.setenv("CALL_FLOW", "flow.json")

    root = start(worker_host)
    rung = [(e.tag, e.text) for e in root[0]]

    if ring == "all_at_once":
        assert rung == [("Client", "front_desk"), ("Number", "+14155550101")]
    else:
        assert rung == [("Client", "front_desk")]
        after = dial_ends(worker_host, root, "no-answer")
        assert [(e.tag, e.text) for e in after[0]] == [("Number", "+14155550101")]


@pytest.mark.parametrize(("open_", "first"), [
    ({day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}, "Dial"),
    ({}, "Say"),
], ids=["always-open", "never-open"])
def test_hours_that_always_or_never_include_now(
    worker_host, app_settings, tmp_path, monkeypatch, open_, first
):
    monkeypatch.setattr(walk, "_now", time.time)  # the real clock
    flow = small_flow() | {"hours": {"timezone": "Pacific/Auckland", "open": open_,
                                     "closed": "bye"}}
    flow_file(tmp_path, monkeypatch, flow)
    app_settings.setenv("CALL_FLOW", "flow.json")

    assert verbs(start(worker_host))[0] == first


@pytest.mark.parametrize(("utc", "first"), [
    ((2026, 12, 6, 21, 0), "Dial"),  # Sunday in UTC, Monday 10:00 in Auckland (UTC+13): open
    ((2026, 12, 7, 5, 0), "Say"),  # Monday in UTC, Monday 18:00 in Auckland: closed
], ids=["monday-there-sunday-here", "monday-both-after-hours-there"])
def test_the_hours_are_the_flows_own_time_zone(
    worker_host, app_settings, tmp_path, monkeypatch, utc, first
):
    moment = datetime.datetime(*utc, tzinfo=datetime.UTC)
    monkeypatch.setattr(walk, "_now", moment.timestamp)
    flow = small_flow() | {"hours": {"timezone": "Pacific/Auckland",
                                     "open": {"mon": ["09:00-17:00"]}, "closed": "bye"}}
    flow_file(tmp_path, monkeypatch, flow)
    app_settings.setenv("CALL_FLOW", "flow.json")

    assert verbs(start(worker_host))[0] == first


# --- safe answers -----------------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    "step=nowhere", "step=welcome&after=menu&attempt=7", "step=welcome&after=menu&attempt=x",
    "step=sales&after=dial&index=5", "step=sales&after=bogus",
    # A step with no `after` is only ever a voicemail's next (its <Redirect>): `sales` alone
    # would skip the menu and the hours (an attack run's).
    "step=sales", "step=sales&after=", "step=welcome",
], ids=["unknown-step", "attempt-over", "attempt-text", "index-over", "unknown-after",
        "no-after", "empty-after", "start-step-again"])
def test_a_state_the_flow_could_not_have_written_hangs_up(worker_host, query):
    root = twiml(post(worker_host, f"{PUBLIC}/api/call_flow?{query}", call_params(Digits="1")))

    assert verbs(root) == ["Say", "Hangup"] and root[0].text == APOLOGY


def test_all_at_once_never_wrote_a_later_number(worker_host, app_settings, tmp_path,
                                                 monkeypatch):
    """Every number rings in the first <Dial>: its action names the first, never another."""
    flow_file(tmp_path, monkeypatch, small_flow(ring="all_at_once"))
    app_settings.setenv("CALL_FLOW", "flow.json")

    root = twiml(post(worker_host, f"{PUBLIC}/api/call_flow?step=ring&after=dial&index=1",
                      call_params(DialCallStatus="no-answer")))

    assert verbs(root) == ["Say", "Hangup"] and root[0].text == APOLOGY


def test_an_unsigned_step_is_refused(worker_host):
    response = post(worker_host, f"{PUBLIC}/api/call_flow?step=sales", call_params(), signed=False)

    assert response.status == 403


def test_a_refused_flow_apologises_never_dials_and_logs_every_problem_once(
    worker_host, app_settings, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.ERROR)
    bad = small_flow()
    bad["steps"]["ring"]["dial"]["to"] = ["+19005550100"]  # premium-rate
    bad["steps"]["bye"]["next"] = "nowhere"
    bad["blocked_callers"] = ["+4402079460000"]  # must be written +442079460000
    flow_file(tmp_path, monkeypatch, bad)
    app_settings.setenv("CALL_FLOW", "flow.json")

    first, second = start(worker_host), start(worker_host)

    assert verbs(first) == verbs(second) == ["Say", "Hangup"]
    refused = [r.getMessage() for r in caplog.records if "outcome=refused" in r.getMessage()]
    assert len(refused) == 1
    assert "premium-rate" in refused[0] and "names no step ('nowhere')" in refused[0]
    # The problems quote the flow's numbers; the log line redacts them, as every line does.
    assert "must be written as +4420******00" in refused[0]
    assert "2079460000" not in refused[0]


def test_a_typo_in_a_texting_setting_does_not_take_the_phone_line_down(worker_host,
                                                                        app_settings):
    """SMS_SENDERS and SMS_ALLOWED_COUNTRIES are send_sms's: malformed, the first is left out
    of the own numbers and the second refuses only the notify_sms numbers, by name."""
    app_settings.setenv("SMS_SENDERS", "+1 415 555 0177")
    assert verbs(start(worker_host)) == ["Say", "Gather", "Redirect"]  # the welcome menu

    app_settings.setenv("SMS_ALLOWED_COUNTRIES", "USA")
    flow = example()
    with pytest.raises(FlowProblems) as refused:
        check(flow, loading.load_call_flow_policy())
    assert refused.value.problems == [
        "step 'voicemail' record notify_sms[0]: cannot be judged: SMS_ALLOWED_COUNTRIES is "
        "malformed: expected ISO 3166 alpha-2 country codes separated by commas, like US,CA"]
    del flow["steps"]["voicemail"]["record"]["notify_sms"]
    assert check(flow, loading.load_call_flow_policy()).start == "welcome"


def test_a_flow_is_judged_again_when_the_call_policy_changes(worker_host, app_settings):
    """The flow is kept per policy: allowing only Canada refuses the example's US numbers at
    once, in the same process, and allowing the US again brings the flow back."""
    assert verbs(start(worker_host)) == ["Say", "Gather", "Redirect"]

    app_settings.setenv("CALL_ALLOWED_COUNTRIES", "CA")
    assert verbs(start(worker_host)) == ["Say", "Hangup"]

    app_settings.setenv("CALL_ALLOWED_COUNTRIES", "US,CA")
    assert verbs(start(worker_host)) == ["Say", "Gather", "Redirect"]


def test_a_missing_flow_file_apologises(worker_host, app_settings):
    app_settings.setenv("CALL_FLOW", "flows/no-such-flow.json")

    assert verbs(start(worker_host)) == ["Say", "Hangup"]


# --- the check -----------------------------------------------------------------------------------

def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def problems(flow: object) -> list[str]:
    with pytest.raises(FlowProblems) as refused:
        check(flow, POLICY)
    return refused.value.problems


def test_the_example_passes_the_check():
    flow = check(example(), POLICY)
    assert set(flow.steps) == {"welcome", "sales", "voicemail", "goodbye"}


@pytest.mark.parametrize(("change", "named"), [
    (lambda f: f["steps"]["welcome"]["menu"]["options"].update({"3": "support"}),
     "step 'welcome' menu option '3': names no step ('support')"),
    (lambda f: f["steps"]["goodbye"].update({"reject": True}),
     "step 'goodbye': must do exactly one of"),
    (lambda f: f["steps"]["goodbye"].pop("hangup"), "step 'goodbye': must do exactly one of"),
    (lambda f: f["steps"].update({"a": {"next": "b"}, "b": {"next": "a"}}),
     "loop back to it with no way out: a -> b -> a"),
    (lambda f: f["hours"].update({"timezone": "Mars/Olympus"}), "hours timezone"),
    (lambda f: f["hours"]["open"].update({"sat": ["17:00-09:00"]}), "hours open sat"),
    (lambda f: f["hours"]["open"].update({"sun": ["9-5"]}), "hours open sun"),
    (lambda f: f["steps"]["sales"]["dial"]["to"].append("+19005550100"), "premium-rate"),
    (lambda f: f["steps"]["sales"]["dial"]["to"].append("+442079460000"), "not allowed"),
    (lambda f: f["steps"]["sales"]["dial"]["to"].append("not a number"), "E.164"),
    (lambda f: f["blocked_callers"].append("+4402079460000"), "must be written as +442079460000"),
    (lambda f: f["steps"]["sales"]["dial"].update({"caller_id": "+14155550188"}), "CALLER_IDS"),
    (lambda f: f["steps"]["voicemail"]["record"].update({"max_seconds": 300}),
     "at most 120 with transcribe"),
    (lambda f: f.update({"start": "nowhere"}), "start: names no step ('nowhere')"),
    (lambda f: f["steps"]["sales"]["dial"].update({"ring": "round_robin"}), "one_by_one"),
    (lambda f: f["steps"]["welcome"].update({"play": "http://example.com/a.mp3"}), "https URL"),
    (lambda f: f["steps"]["sales"]["dial"]["to"].append("client:front desk"),
     "must name a browser as client:"),
    # The app's own number rung or texted: the call or text comes back to the app, which may
    # ring or text again, every leg billed.
    (lambda f: f["steps"]["sales"]["dial"]["to"].append(APP_NUMBER),
     f"{APP_NUMBER} is one of this app's own numbers"),
    (lambda f: f["steps"]["voicemail"]["record"]["notify_sms"].append(APP_NUMBER),
     f"{APP_NUMBER} is one of this app's own numbers"),
    (lambda f: (f.update({"by_number": {"+14155550177": "welcome"}}),
                f["steps"]["sales"]["dial"]["to"].append("+14155550177")),
     "+14155550177 is one of the numbers this flow answers (by_number)"),
    # A voicemail's text goes out under send_sms's policy, so it is judged by it.
    (lambda f: f["steps"]["voicemail"]["record"]["notify_sms"].append("+442079460000"),
     "Messages to numbers in GB are not allowed (SMS_ALLOWED_COUNTRIES"),
    (lambda f: f["steps"]["welcome"]["menu"]["options"].update({"#": "goodbye"}),
     "# ends what the caller types"),
    (lambda f: f["steps"]["goodbye"].update({"say": "Bye caller.of~this~call"}),
     "which the app reserves"),
    (lambda f: f["steps"].update({
        f"s{i}": {"say": "x" * 4000, "next": f"s{i + 1}"} for i in range(15)} | {
        "s15": {"say": "x" * 4000, "hangup": True}}),
     "step 's0': its TwiML would take about 66,560 bytes"),
    # Bytes, not characters, and each step's markup: 1,500 short steps are over it too.
    (lambda f: f["steps"].update({
        f"s{i}": {"say": "Hi.", "next": f"s{i + 1}"} for i in range(1500)} | {
        "s1500": {"say": "Bye.", "hangup": True}}), "step 's0': its TwiML would take about"),
    # Escaped: each < takes 4 bytes in the document (16,000 characters would take 16,640).
    (lambda f: f["steps"].update({
        f"s{i}": {"say": "<" * 4000, "next": f"s{i + 1}"} for i in range(3)} | {
        "s3": {"say": "<" * 4000, "hangup": True}}),
     "step 's0': its TwiML would take about 64,640 bytes"),
    (lambda f: f["steps"]["goodbye"].update({"say": "Bye caller.of\x01~this~call"}),
     "which the app reserves"),
    (lambda f: f["steps"]["welcome"].update({"play": "https://example.com/a b.mp3"}),
     "https URL Twilio can fetch"),
    # Each of these ended the check command in a traceback (an attack run's).
    (lambda f: f["steps"]["welcome"].update({"play": "https://[::1/a.mp3"}),
     "https URL Twilio can fetch"),
    (lambda f: f["steps"]["welcome"].update({"play": "https://example.com:99999/a.mp3"}),
     "https URL Twilio can fetch"),
    (lambda f: f["hours"].update({"timezone": "America"}), "is not an IANA time zone"),
    (lambda f: f["hours"].update({"timezone": "A" * 300}), "is not an IANA time zone"),
    # What XML cannot hold is dropped from the document: these would say nothing.
    (lambda f: f["steps"]["goodbye"].update({"say": "\x01\x02"}), "must be text of 1 to"),
    # Loops the caller does not choose (an attack run's): silence repeated the menu for ever,
    # the same people rang round after round, a voicemail recorded again and again.
    (lambda f: f["steps"]["welcome"]["menu"].update({"otherwise": "welcome"}),
     "step 'welcome': without the caller pressing or saying anything (silence, nobody "
     "answering, a recording's next), the call comes back to it and would go round forever: "
     "welcome -> welcome"),
    (lambda f: f["steps"]["sales"]["dial"].update({"otherwise": "sales"}),
     "the call comes back to it and would go round forever: sales -> sales"),
    (lambda f: f["steps"]["voicemail"].update({"next": "voicemail"}),
     "would go round forever: voicemail -> voicemail"),
    (lambda f: (f["steps"]["welcome"]["menu"].update({"otherwise": "sales"}),
                f["steps"]["sales"]["dial"].update({"otherwise": "welcome"})),
     "would go round forever: "),
    (lambda f: f["steps"]["sales"]["dial"]["to"].append("+14155550100"),
     "step 'sales' dial to: lists +14155550100 more than once: each is rung once a call"),
    (lambda f: f["steps"]["voicemail"]["record"]["notify_sms"].append("+14155550100"),
     "lists +14155550100 more than once: each is texted once a call"),
    (lambda f: f["steps"]["welcome"]["menu"].update(
        {"speech": True, "options": {"Sales.": "sales"}}),
     "option 'Sales.': no caller's speech can match it: write it as 'sales'"),
    (lambda f: f["steps"]["welcome"]["menu"].update(
        {"speech": True, "options": {" support ": "sales"}}),
     "no caller's speech can match it: write it as 'support'"),
    (lambda f: f["steps"]["welcome"]["menu"].update(
        {"speech": True, "options": {"customer  service": "sales"}}),
     "no caller's speech can match it: write it as 'customer service'"),
    (lambda f: f["steps"]["welcome"]["menu"].update(
        {"speech": True, "options": {"Sales": "sales", "sales": "voicemail"}}),
     "option 'sales': is the same spoken word as option 'Sales'"),
    (lambda f: f["hours"].update({"timezone": "localtime"}), "is not an IANA time zone"),
    (lambda f: f["hours"].update({"timezone": "right/America/New_York"}),
     "is not an IANA time zone"),
], ids=["unknown-step", "two-actions", "no-action", "next-loop", "time-zone", "range-order",
        "range-shape", "premium", "country", "malformed-number", "trunk-zero", "caller-id",
        "transcribe-length", "start", "ring", "play-http", "client-name", "own-number-rung",
        "own-number-texted", "by-number-rung", "notify-sms-policy", "hash-option",
        "caller-slot", "document-size", "document-steps", "document-escaped", "caller-slot-hidden",
        "play-space", "play-ipv6", "play-port", "time-zone-folder", "time-zone-long",
        "say-control-only", "silent-menu-loop", "unanswered-dial-loop", "voicemail-loop",
        "menu-and-dial-loop", "number-rung-twice", "number-texted-twice", "speech-punctuation",
        "speech-spaces", "speech-inner-spaces", "speech-same-word", "time-zone-localtime",
        "time-zone-right"])
def test_the_check_refuses_each_bad_flow_by_name(change, named):
    flow = example()
    change(flow)

    found = problems(flow)

    assert any(named in p for p in found), found


class Looked(str):
    """A step name that counts how often a dict or set looks it up (each lookup hashes it)."""

    lookups = 0

    def __hash__(self) -> int:
        Looked.lookups += 1
        return str.__hash__(self)


def test_a_loop_at_the_end_of_a_long_chain_is_found_and_each_step_followed_once():
    """Each step's chain is followed once: the check of a 3,000-step chain took minutes when
    every step walked its whole chain again (millions of lookups; a few per step now)."""
    steps = 3000
    flow = example()
    flow["steps"].update({Looked(f"s{i}"): {"say": "On.", "next": Looked(f"s{i + 1}")}
                          for i in range(steps)})
    flow["steps"][Looked(f"s{steps}")] = {"say": "Back.", "next": Looked(f"s{steps - 2}")}
    Looked.lookups = 0

    assert problems(flow) == ["step 's2998': its next steps loop back to it with no way out: "
                              "s2998 -> s2999 -> s3000 -> s2998"]
    assert Looked.lookups < 30 * steps, Looked.lookups


def test_the_check_names_every_problem_at_once():
    flow = example()
    flow["start"] = "nowhere"
    flow["steps"]["sales"]["dial"]["to"] = ["+19005550100"]
    assert len(problems(flow)) == 2


def test_every_shipped_flow_passes_the_check_command():
    for path in sorted((REPO / "flows").glob("*.json")):
        if path.name.endswith(".schema.json"):
            continue
        kind = ["--messages"] if path.name.startswith("messages") else []
        result = subprocess.run(
            [sys.executable, "scripts/check_flow.py", *kind, str(path.relative_to(REPO))],
            cwd=REPO, capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "TWILIO_PHONE_NUMBER": APP_NUMBER},
        )
        assert result.returncode == 0, result.stderr
        assert f"{path.relative_to(REPO)}: ok (" in result.stdout


@pytest.mark.parametrize(("content", "named"), [
    # json.loads keeps the last of two equal keys: the first "mon", or step, would vanish.
    ('{"start": "a", "steps": {"a": {"dial": {"to": ["+14155550100"]}}, "a": {"hangup": true}}}',
     "the key 'a' appears twice in one object"),
    ('{"start": "a", "hours": {"timezone": "UTC", "open": {"mon": ["09:00-17:00"], "mon": []}, '
     '"closed": "a"}, "steps": {"a": {"hangup": true}}}', "the key 'mon' appears twice"),
    ("[" * 100_000, "nests too deeply to be a flow"),
    ('{"start": "a",\n "steps": {"a": {"hangup": true}},}', "is not JSON: Expecting property name "
     "enclosed in double quotes at line 2 column 35"),
    # Valid JSON, but half a character: no <Say> or log line can carry it (an attack run's:
    # the check command ended in a traceback).
    ('{"start": "a", "steps": {"a": {"say": "Hi \\ud800", "hangup": true}}}',
     "holds a \\u escape of half a character"),
    (b"\xff\xfe{}", "is not UTF-8 text (byte 0)"),
], ids=["step-twice", "day-twice", "deep", "json-error", "lone-surrogate", "not-utf-8"])
def test_a_flow_file_json_reads_otherwise_than_written_is_refused(tmp_path, content, named):
    if isinstance(content, bytes):
        (tmp_path / "flow.json").write_bytes(content)
    else:
        (tmp_path / "flow.json").write_text(content)

    with pytest.raises(FlowProblems) as refused:
        loading.read("flow.json", POLICY, root=tmp_path)

    assert any(named in p for p in refused.value.problems), refused.value.problems
    result = subprocess.run(
        [sys.executable, "scripts/check_flow.py", str(tmp_path / "flow.json")], cwd=REPO,
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "TWILIO_PHONE_NUMBER": APP_NUMBER})
    assert result.returncode == 1 and named in result.stderr
    assert "Traceback" not in result.stderr


def test_a_flow_file_an_editor_saved_with_a_byte_order_mark_is_read(tmp_path):
    (tmp_path / "flow.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(example()).encode())

    assert set(loading.read("flow.json", POLICY, root=tmp_path).steps) == set(example()["steps"])


def test_links_that_loop_are_refused_by_name(tmp_path):
    (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")

    with pytest.raises(FlowProblems) as refused:
        loading.read("a.json", POLICY, root=tmp_path)

    assert refused.value.problems == ["CALL_FLOW: 'a.json' cannot be followed to a file"]


def test_the_check_command_lists_the_problems_and_exits_1(tmp_path):
    bad = example()
    bad["steps"]["sales"]["dial"]["to"] = ["+19005550100"]
    flow = tmp_path / "bad.json"
    flow.write_text(json.dumps(bad))

    result = subprocess.run(
        [sys.executable, "scripts/check_flow.py", str(flow)], cwd=REPO, capture_output=True,
        text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "TWILIO_PHONE_NUMBER": APP_NUMBER},
    )

    assert result.returncode == 1
    assert "refused (1 problems)" in result.stderr and "premium-rate" in result.stderr


def test_the_schema_takes_the_example_and_refuses_an_unknown_key():
    from jsonschema import Draft202012Validator

    schema = json.loads((REPO / "flows" / "calls.schema.json").read_text())
    validator = Draft202012Validator(schema)
    assert list(validator.iter_errors(example())) == []
    bad = example()
    bad["steps"]["goodbye"]["hang_up"] = True
    assert list(validator.iter_errors(bad)) != []


# --- recordings -----------------------------------------------------------------------------------

def test_a_recording_and_its_transcription_are_kept_once(worker_host, azurite_storage, twilio_api):
    url = f"{PUBLIC}/api/recording_status?step=voicemail"
    recording = call_params(RecordingSid="RE" + "2" * 32, RecordingStatus="completed",
                            RecordingDuration="42",
                            RecordingUrl="https://api.twilio.com/2010-04-01/Accounts/x/Recordings/y")
    transcription = call_params(RecordingSid="RE" + "2" * 32, TranscriptionSid="TR" + "3" * 32,
                                TranscriptionStatus="completed",
                                TranscriptionText="Please call me back.")

    answers = [post(worker_host, url, recording).status for _ in range(2)]
    answers.append(post(worker_host, url, transcription).status)
    shown = worker_host.request("GET", f"/api/calls/{CALL_SID}", base_url=PUBLIC).json()

    assert answers == [204, 204, 204]
    assert shown["recordings"] == [{
        "sid": "RE" + "2" * 32, "status": "completed", "duration_seconds": 42,
        "transcription": "Please call me back.", "transcription_status": "completed",
        "deleted": False,
    }]
    assert "twilio.com" not in json.dumps(shown)  # never the recording's URL


# --- voicemail notifications ----------------------------------------------------------------------

def recording_callback(root: ET.Element, attribute: str) -> str:
    """The callback URL as Twilio requests it: the fragment (its connection overrides) is
    Twilio's, never sent."""
    [record] = root.iter("Record")
    url = record.get(attribute) or ""
    assert url.endswith("#rc=2&rp=ct,5xx")
    return url.split("#")[0]


def test_a_voicemail_texts_each_listed_number_once_per_recording_and_transcription(
    worker_host, azurite_storage, twilio_api
):
    root = press(worker_host, start(worker_host), "2")
    url = recording_callback(root, "recordingStatusCallback")
    assert recording_callback(root, "transcribeCallback") == url
    recording = call_params(RecordingSid="RE" + "4" * 32, RecordingStatus="completed",
                            RecordingDuration="42")
    transcription = call_params(RecordingSid="RE" + "4" * 32, TranscriptionSid="TR" + "5" * 32,
                                TranscriptionStatus="completed", TranscriptionText="Call me.")

    answers = [post(worker_host, url, recording).status for _ in range(2)]
    answers += [post(worker_host, url, transcription).status for _ in range(2)]

    assert answers == [204, 204, 204, 204]
    texts = [(c.data["To"], c.data["Body"]) for c in twilio_api.creates]
    assert texts == [
        (OUR_NUMBER, "New voicemail from +1 415-555-0123, 42 s."),
        (OUR_NUMBER, "Voicemail from +1 415-555-0123: Call me."),
    ]


def test_a_voicemails_call_record_names_its_caller_though_the_recording_came_first(
    worker_host, azurite_storage, twilio_api
):
    """A number's status callback brings only the call's end, after the recording's callback
    has made the record; that record had said nothing of who called, and the later callback
    found it there and added nothing: every voicemail showed an unknown caller (an attack
    run's). The recording callback's URL names the caller, signed."""
    sid = "CA" + uuid.uuid4().hex
    root = press(worker_host, start(worker_host), "2")
    url = recording_callback(root, "recordingStatusCallback")
    recording = call_params(CallSid=sid, RecordingSid="RE" + uuid.uuid4().hex,
                            RecordingStatus="completed", RecordingDuration="12")
    del recording["From"], recording["To"], recording["Direction"]  # not in Twilio's
    ended = call_params(CallSid=sid, CallStatus="completed", CallDuration="30")

    assert post(worker_host, url, recording).status == 204
    assert post(worker_host, f"{PUBLIC}/api/call_status", ended).status == 204

    shown = worker_host.request("GET", f"/api/calls/{sid}", base_url=PUBLIC).json()
    assert (shown["from"], shown["direction"], shown["status"]) == (CALLER, "inbound",
                                                                    "completed")
    assert [r["duration_seconds"] for r in shown["recordings"]] == [12]
    assert "num_media" not in shown and "keyword" not in shown  # a text's, not a call's


@pytest.mark.parametrize(("duration", "said"), [
    ("7", ", 7 s."), ("-1", "."), ("abc", "."), ("9" * 30, "."), ("", "."),
], ids=["seconds", "negative", "text", "huge", "none"])
def test_a_voicemail_text_gives_the_duration_the_record_shows(
    worker_host, azurite_storage, twilio_api, duration, said
):
    """The text quoted RecordingDuration as it came ("-1 s.", "abc s."), where the call's record
    shows no duration (an attack run's)."""
    root = press(worker_host, start(worker_host), "2")
    url = recording_callback(root, "recordingStatusCallback")
    recording = call_params(RecordingSid="RE" + uuid.uuid4().hex, RecordingStatus="completed",
                            RecordingDuration=duration)

    assert post(worker_host, url, recording).status == 204

    assert [c.data["Body"] for c in twilio_api.creates] == [
        f"New voicemail from +1 415-555-0123{said}"]


def test_a_notification_twilio_refused_for_now_makes_the_callback_try_again(
    worker_host, azurite_storage, twilio_api
):
    root = press(worker_host, start(worker_host), "2")
    url = recording_callback(root, "recordingStatusCallback")
    recording = call_params(RecordingSid="RE" + "6" * 32, RecordingStatus="completed",
                            RecordingDuration="9")
    twilio_api.error(429, 20429, "Too Many Requests")

    first = post(worker_host, url, recording)
    again = post(worker_host, url, recording)

    assert (first.status, again.status) == (503, 204)  # Twilio retries a 5xx callback
    assert len(twilio_api.created) == 1  # sent once, on the retry


@pytest.fixture
def nothing_owed(azurite_storage):
    """No voicemail text owed by an earlier test (they share the emulator)."""
    from azure.data.tables import TableServiceClient

    from shared.callflows import voicemail

    with TableServiceClient.from_connection_string(azurite_storage.connection_string) as tables:
        tables.delete_table(voicemail.OWED_TABLE)
    return azurite_storage


def owed_rows(azurite_storage) -> list[dict]:
    from azure.data.tables import TableClient

    from shared.callflows import voicemail

    with TableClient.from_connection_string(azurite_storage.connection_string,
                                            voicemail.OWED_TABLE) as table:
        try:
            return list(table.list_entities())
        except Exception:  # no table yet: nothing was ever owed
            return []


def test_a_notification_still_owed_after_twilios_tries_is_sent_by_the_timer_once(
    worker_host, nothing_owed, twilio_api
):
    """Twilio's tries of a recording callback last 15 seconds (an attack run's: a longer outage
    lost the text for good). What is still owed then is kept, sealed, and the voicemail_notices timer
    sends it, under the same key: once, however often it runs."""
    import voicemail_notices

    root = press(worker_host, start(worker_host), "2")
    url = recording_callback(root, "recordingStatusCallback")
    recording = call_params(RecordingSid="RE" + uuid.uuid4().hex, RecordingStatus="completed",
                            RecordingDuration="12")
    answers = []
    for _ in range(3):  # the callback and Twilio's two tries (rc=2), all rate-limited
        twilio_api.error(429, 20429, "Too Many Requests")
        answers.append(post(worker_host, url, recording).status)
    assert answers == [503, 503, 503] and twilio_api.created == []
    [owed] = owed_rows(nothing_owed)
    assert owed["To"] == "+14155550100" and owed["Step"] == "voicemail"

    run_app(voicemail_notices.main(None))
    run_app(voicemail_notices.main(None))

    assert len(twilio_api.created) == 1  # the three refused by Twilio created nothing
    assert [c.data["Body"] for c in twilio_api.creates[3:]] == [
        "New voicemail from +1 415-555-0123, 12 s."]
    assert owed_rows(nothing_owed) == []


def test_an_owed_notification_the_callback_sent_after_all_is_not_sent_again(
    worker_host, nothing_owed, twilio_api
):
    """Owed after a refused try, then sent by Twilio's next delivery of the callback: the timer
    finds the row, and the idempotency key it shares with the callback replays the text."""
    import voicemail_notices

    root = press(worker_host, start(worker_host), "2")
    url = recording_callback(root, "recordingStatusCallback")
    recording = call_params(RecordingSid="RE" + uuid.uuid4().hex, RecordingStatus="completed",
                            RecordingDuration="3")
    twilio_api.error(429, 20429, "Too Many Requests")
    assert post(worker_host, url, recording).status == 503
    assert post(worker_host, url, recording).status == 204  # sent on Twilio's retry
    assert len(owed_rows(nothing_owed)) == 1

    run_app(voicemail_notices.main(None))

    assert len(twilio_api.created) == 1
    assert owed_rows(nothing_owed) == []


@pytest.mark.parametrize(("field", "value"), [
    ("Body", "Call +1 900 555 0100 now"),
    ("OwedSince", datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)),  # an old row made young
], ids=["body", "owed-since"])
def test_an_owed_notification_altered_in_the_table_is_dropped_unsent(
    worker_host, nothing_owed, twilio_api, field, value
):
    from azure.data.tables import TableClient, UpdateMode

    import voicemail_notices
    from shared.callflows import voicemail

    root = press(worker_host, start(worker_host), "2")
    url = recording_callback(root, "recordingStatusCallback")
    twilio_api.error(429, 20429, "Too Many Requests")
    post(worker_host, url, call_params(RecordingSid="RE" + uuid.uuid4().hex,
                                       RecordingStatus="completed", RecordingDuration="5"))
    [owed] = owed_rows(nothing_owed)
    with TableClient.from_connection_string(nothing_owed.connection_string,
                                            voicemail.OWED_TABLE) as table:
        table.update_entity({"PartitionKey": owed["PartitionKey"], "RowKey": owed["RowKey"],
                             field: value}, mode=UpdateMode.MERGE)

    run_app(voicemail_notices.main(None))

    assert twilio_api.created == [] and owed_rows(nothing_owed) == []


def test_an_owed_notification_written_by_anyone_else_is_dropped_unsent(
    worker_host, nothing_owed, twilio_api, caplog
):
    from azure.data.tables import TableClient

    import voicemail_notices
    from shared.callflows import voicemail

    forged = {"PartitionKey": voicemail.OWED_PARTITION, "RowKey": "f" * 64,
              "Recording": "RE" + "8" * 32, "To": "+14155550100", "Kind": "recording",
              "Body": "Call +1 900 555 0100 now", "Step": "voicemail", "Seal": "0" * 64,
              "OwedSince": datetime.datetime.now(datetime.UTC)}
    with TableClient.from_connection_string(nothing_owed.connection_string,
                                            voicemail.OWED_TABLE) as table:
        table.create_table()
        table.create_entity(forged)

    run_app(voicemail_notices.main(None))

    assert twilio_api.creates == []
    assert owed_rows(nothing_owed) == []
    assert any("outcome=dropped reason=its seal does not verify" in r.getMessage()
               for r in caplog.records)


# --- the simulator walks a flow ---------------------------------------------------------------------

def test_the_simulator_walks_the_example_flow_to_a_voicemail(
    start_served_host, azurite_storage, twilio_api, app_settings, tmp_path, capsys
):
    from devhost import simulate

    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    served = start_served_host()
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": PUBLIC}}))

    code = simulate.main([
        "voice", "--url", f"{served.url}/api/voice_url", "--app-root", str(tmp_path),
        "--from", CALLER, "--to", OUR_NUMBER,
        "--walk", "1,no-answer,busy,record:42:Please call me back",
    ])

    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("HTTP 200") == 5 and out.count("HTTP 204") == 2
    for seen in ("pressed 1", "the dial ended no-answer", "+14155550101", "the dial ended busy",
                 "recorded 42 s", "Thank you. Goodbye.", "walk: the call ended."):
        assert seen in out, seen
    assert [c.data["Body"] for c in twilio_api.creates] == [
        "New voicemail from +1 415-555-0123, 42 s.",
        "Voicemail from +1 415-555-0123: Please call me back",
    ]


def test_the_simulator_says_which_choice_the_flow_asked_for(
    start_served_host, app_settings, tmp_path, capsys
):
    from devhost import simulate

    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    served = start_served_host()
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": PUBLIC}}))

    code = simulate.main(["voice", "--url", f"{served.url}/api/voice_url", "--app-root",
                          str(tmp_path), "--from", CALLER, "--to", OUR_NUMBER, "--walk", "1"])

    assert code == 1
    assert "asks for a DialCallStatus" in capsys.readouterr().out


def test_by_number_play_pause_and_speech(worker_host, app_settings, tmp_path, monkeypatch):
    """A second number starts elsewhere; a step plays and pauses before its menu; a spoken
    option is understood with speech on."""
    flow = {"start": "main", "by_number": {"+14155550111": "spoken"}, "steps": {
        "main": {"say": "Main line.", "hangup": True},
        "spoken": {"play": "https://example.com/hello.mp3", "pause": 2,
                   "menu": {"prompt": "Say sales or press 1.", "speech": True,
                            "options": {"1": "bye", "sales": "bye"}, "otherwise": "main"}},
        "bye": {"say": "Bye.", "hangup": True}}}
    flow_file(tmp_path, monkeypatch, flow)
    app_settings.setenv("CALL_FLOW", "flow.json")

    main = twiml(post(worker_host, f"{PUBLIC}/api/voice_url", call_params()))
    other = twiml(post(worker_host, f"{PUBLIC}/api/voice_url", call_params(To="+14155550111")))
    spoken = twiml(post(worker_host, gather_action(other),
                        call_params(To="+14155550111", SpeechResult="Sales.")))

    assert verbs(main) == ["Say", "Hangup"]
    assert verbs(other) == ["Play", "Pause", "Gather", "Redirect"]
    assert other[0].text == "https://example.com/hello.mp3" and other[1].get("length") == "2"
    assert other[2].get("input") == "dtmf speech"
    assert verbs(spoken) == ["Say", "Hangup"] and spoken[0].text == "Bye."


def test_a_menu_with_a_star_option_still_stops_at_its_length(worker_host, app_settings, tmp_path,
                                                                monkeypatch):
    """* is a key Twilio sends as a digit: a menu of 1 and * takes one key, not the timeout."""
    flow = {"start": "main", "steps": {
        "main": {"menu": {"prompt": "Press 1, or star to repeat.",
                          "options": {"1": "bye", "*": "main"}, "otherwise": "bye"}},
        "bye": {"say": "Bye.", "hangup": True}}}
    flow_file(tmp_path, monkeypatch, flow)
    app_settings.setenv("CALL_FLOW", "flow.json")

    root = start(worker_host)

    [gather] = root.iter("Gather")
    assert gather.get("numDigits") == "1"
    assert verbs(press(worker_host, root, "*")) == ["Gather", "Redirect"]


def test_the_voice_settings_apply_to_every_say(worker_host, app_settings):
    app_settings.setenv("VOICE_NAME", "Polly.Joanna")
    app_settings.setenv("VOICE_LANGUAGE", "en-US")

    root = start(worker_host)

    says = list(root.iter("Say"))
    assert len(says) == 2
    assert all((s.get("voice"), s.get("language")) == ("Polly.Joanna", "en-US") for s in says)
