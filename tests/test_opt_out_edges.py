"""Opt-outs at their edges (an adversarial review of issue 22's work): each test states a promise
of docs/inbound-texts.md that a first version broke. An opt-out through a Messaging Service
covers the number; sms_url's own answers text nobody who opted out; a flow that cannot be loaded
is refused, never a 500, and a STOP is kept first; a retried START does not undo a later STOP;
reconciliation keeps an opt-out storage lost; what reads as STOP is STOP; a text whose index
write failed is listed after a retry; a broadcast checks just before it sends; an opt-out that
cannot be kept is logged."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import xml.etree.ElementTree as ET
from email.utils import format_datetime

import pytest
from conftest import ACCOUNT_SID, TWILIO_NUMBER, run_app
from test_broadcasts import drain, queue_message, status
from test_opt_outs import PERSON, SERVICE, replies, send_sms, start_broadcast, text_in

import broadcast_send
from devhost.worker_host import HostResponse
from shared.broadcasts import sending
from shared.messageflows import loading
from shared.records import optouts, reconcile, storage, store

PUBLIC = "https://myapp.azurewebsites.net"
STAFF = "+14155550177"


@pytest.fixture(autouse=True)
def clean(texting_storage):
    """No opt-out and no reconciliation watermark left by an earlier test; no flow cached."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables import TableServiceClient

    with (TableServiceClient.from_connection_string(texting_storage.connection_string)
          as service, contextlib.suppress(ResourceNotFoundError)):
        service.delete_table(reconcile.TABLE)
    loading.forget()
    yield texting_storage
    loading.forget()


_n = iter(range(1, 10**6))


def sid() -> str:
    return "SM" + hashlib.sha256(f"attack22-{next(_n)}".encode()).hexdigest()[:32]


def answer_of(response: HostResponse) -> list[tuple[str | None, str]]:
    assert response.status == 200, response.body
    root = ET.fromstring(response.body)
    return [(m.get("to"), m.text or "") for m in root]


def use_flow(tmp_path, monkeypatch, app_settings, flow: dict) -> None:
    (tmp_path / "flow.json").write_text(json.dumps(flow))
    monkeypatch.setattr(loading, "APP_ROOT", tmp_path)
    app_settings.setenv("MESSAGE_FLOW", "flow.json")
    loading.forget()


# --- an opt-out kept under the Messaging Service is not seen by texts sent from its number ---

def test_stop_through_a_messaging_service_stops_texts_sent_from_its_number(
    worker_host, twilio_api
):
    # The app sends from TWILIO_PHONE_NUMBER (no TWILIO_MESSAGING_SERVICE_SID), but the number
    # belongs to a Messaging Service (as every US A2P 10DLC number must): Twilio's webhook for
    # a text to it carries MessagingServiceSid.
    text_in(worker_host, "STOP", MessageSid=sid(), MessagingServiceSid=SERVICE)

    response = send_sms(worker_host)

    assert response.status == 422, "the person said STOP to this very number"
    assert twilio_api.creates == []


def test_a_broadcast_from_that_number_is_not_screened_either(worker_host, twilio_api, clean):
    text_in(worker_host, "STOP", MessageSid=sid(), MessagingServiceSid=SERVICE)

    answer = start_broadcast(worker_host, [PERSON])

    assert [r["to"] for r in answer["refused"]] == [PERSON]


# --- sms_url's own answers text people who opted out -----------------------------------------

def test_sms_url_does_not_reply_to_someone_who_opted_out(worker_host, twilio_api):
    text_in(worker_host, "REVOKE", MessageSid=sid())
    assert send_sms(worker_host).status == 422  # the app knows

    answered = text_in(worker_host, "who is this? why do you text me", MessageSid=sid())

    assert replies(answered) == [], "SMS_REPLY went to a person who opted out"


def test_a_flow_does_not_forward_to_a_number_that_opted_out(
    worker_host, app_settings, tmp_path, monkeypatch
):
    use_flow(tmp_path, monkeypatch, app_settings, {"forward_to": [STAFF]})
    text_in(worker_host, "STOP", person=STAFF, MessageSid=sid())  # the staff phone said STOP

    answered = answer_of(text_in(worker_host, "hello", MessageSid=sid()))

    assert [to for to, _ in answered if to == STAFF] == [], "forwarded to an opted-out number"


# --- loading the flow can raise: a 500 on every text, and a STOP is not kept -----------------

def test_a_malformed_twilio_phone_number_is_a_refused_flow_not_a_500(
    worker_host, twilio_api, app_settings
):
    # A common slip: the number without its +. The flow has no number of its own to judge.
    app_settings.setenv("TWILIO_PHONE_NUMBER", "14155550100")
    app_settings.setenv("MESSAGE_FLOW", "flows/messages.example.json")
    loading.forget()

    answered = text_in(worker_host, "STOP", MessageSid=sid())

    assert answered.status == 200, answered.body  # got 500
    app_settings.setenv("TWILIO_PHONE_NUMBER", TWILIO_NUMBER)
    assert send_sms(worker_host).status == 422  # the STOP must have been kept


def test_a_corrupt_check_stamp_is_ignored_not_a_500(
    worker_host, twilio_api, app_settings, tmp_path, monkeypatch
):
    flow = json.dumps({"reply": "Thanks!"}).encode()
    (tmp_path / "flow.json").write_bytes(flow)
    (tmp_path / "flow.json.checked").write_text(json.dumps({
        "format": 1, "flow": hashlib.sha256(flow).hexdigest(),
        "settings": {"TWILIO_PHONE_NUMBER": TWILIO_NUMBER, "SMS_ALLOWED_COUNTRIES": None},
        "code": {"files": {"shared/\u0000.py": "0" * 64}, "libraries": {"phonenumbers": "x"}},
    }))
    monkeypatch.setattr(loading, "APP_ROOT", tmp_path)
    app_settings.setenv("MESSAGE_FLOW", "flow.json")
    loading.forget()

    answered = text_in(worker_host, "STOP", MessageSid=sid())

    assert answered.status == 200, answered.body  # got 500: ValueError: embedded null byte
    assert send_sms(worker_host).status == 422


# --- a redelivered START undoes a later STOP ---------------------------------------------------

def test_a_redelivered_start_does_not_undo_a_later_stop(worker_host, twilio_api):
    start = sid()
    text_in(worker_host, "START", MessageSid=start)
    text_in(worker_host, "STOP", MessageSid=sid())
    text_in(worker_host, "START", MessageSid=start)  # Twilio delivers the first webhook again

    assert send_sms(worker_host).status == 422, "a retried webhook changed the person's consent"
    assert twilio_api.creates == []


# --- an opt-out lost to storage is recovered neither by reconcile nor by 21610 ----------------

def listed_inbound(message_sid: str, body: str, minutes_ago: float = 5) -> dict:
    when = format_datetime(datetime.datetime.now(datetime.UTC)
                           - datetime.timedelta(minutes=minutes_ago), usegmt=True)
    return {"sid": message_sid, "account_sid": ACCOUNT_SID, "date_created": when,
            "date_sent": when, "direction": "inbound", "to": TWILIO_NUMBER, "from": PERSON,
            "body": body, "status": "received", "num_media": "0",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}.json",
            "api_version": "2010-04-01"}


def test_reconcile_keeps_an_opt_out_whose_text_was_kept_but_whose_opt_out_was_not(
    worker_host, twilio_api, monkeypatch
):
    async def storage_fails(*_, **__):
        raise storage.StorageUnavailable("the opt-outs table timed out")

    keyword_sid = sid()
    # The text's row is written; the opt-out's write fails (slow storage, its own 3 s budget).
    with monkeypatch.context() as patch:
        patch.setattr(optouts, "set_opted_out", storage_fails)
        assert replies(text_in(worker_host, "REVOKE", MessageSid=keyword_sid)) == []
    twilio_api.created.append(listed_inbound(keyword_sid, "REVOKE"))

    run_app(reconcile.run())  # "an opt-out keyword among them is kept too"

    # REVOKE is the app's own keyword, not Twilio's: no 21610 will ever come to teach it.
    assert send_sms(worker_host).status == 422
    assert twilio_api.creates == []


# --- keywords the person sees as STOP are not honoured ---------------------------------------

@pytest.mark.parametrize("body", [
    "STOP\u200b",           # zero-width space (pasted, some keyboards)
    "\ufeffSTOP",           # byte-order mark
    "STOP\u2060",           # word joiner
    "\uff33\uff34\uff2f\uff30",  # full-width letters (CJK input methods)
    "~stop~",               # ASCII punctuation Unicode calls a symbol: ~ + = $ ^ | < > `
    "+STOP",
    "STOP=",
    " " * 40 + "STOP",      # "spaces around it ignored", but > 40 characters in all
    "STOP" + "\n" * 40,
    "STOP\x00",             # a control character a phone or gateway left in
    "Opt out",              # the FCC's list (2025) names it as two words
    "opt-out",
    "OPT_OUT",
    "Stop all",
    # An emoji as a phone sends it: the symbol and the variation selector U+FE0F after it (an
    # attack run's: "STOP ⛔" was STOP and "STOP ⛔️" was not, nor "STOP ❤️", whose heart always
    # carries one), a keycap (# U+FE0F U+20E3), and the other invisible characters that are not
    # format characters: a text-style selector, the combining grapheme joiner, Hangul fillers.
    "STOP \u26d4\ufe0f",
    "STOP \u2764\ufe0f",
    "\u2702\ufe0f STOP",
    "STOP #\ufe0f\u20e3",
    "STOP\ufe0e",
    "STOP\u034f",
    "STOP\u3164",
    "STOP\u115f",
])
def test_what_reads_as_stop_is_honoured(worker_host, twilio_api, body):
    text_in(worker_host, body, MessageSid=sid())

    assert send_sms(worker_host).status == 422, repr(body)


# --- an inbound text whose index row failed is never listed, and never repaired --------------

def test_a_text_whose_index_write_failed_is_listed_after_a_retry_or_reconcile(
    worker_host, twilio_api, monkeypatch
):
    real = storage.on_table
    failed = []

    async def index_fails_once(name, operation):
        if name == store.INDEX_TABLE and not failed:
            failed.append(name)
            raise storage.StorageUnavailable("timed out")  # or cancelled by the 3 s budget
        return await real(name, operation)

    text_sid = sid()
    monkeypatch.setattr(storage, "on_table", index_fails_once)
    text_in(worker_host, "Is the shop open?", MessageSid=text_sid)
    monkeypatch.setattr(storage, "on_table", real)
    text_in(worker_host, "Is the shop open?", MessageSid=text_sid)  # Twilio delivers it again
    twilio_api.created.append(listed_inbound(text_sid, "Is the shop open?"))
    run_app(reconcile.run())

    listed = worker_host.request("GET", "/api/messages?limit=100", base_url=PUBLIC)
    assert listed.status == 200, listed.body
    listed = listed.json()
    one = worker_host.request("GET", f"/api/messages/{text_sid}", base_url=PUBLIC)
    assert one.status == 200  # the record is there...
    assert failed and text_sid in [m["sid"] for m in listed["messages"]]  # ...never listed


# --- a broadcast's opt-out read is at most Screening.FRESH old when the text leaves -----------

def test_a_stop_during_the_wait_for_the_slot_is_honoured_once_the_read_is_stale(
    worker_host, twilio_api, clean, monkeypatch
):
    """The slot of the pace is taken after the opt-out read and the claim: when the wait for it
    makes the read older than Screening.FRESH (0 here: any wait), the opt-out is read again
    before the create, and a STOP that landed meanwhile is honoured; the key is given back."""
    answer = start_broadcast(worker_host, [PERSON])
    [chunk] = drain(clean, answer["id"])
    monkeypatch.setattr(sending.Screening, "FRESH", 0.0)
    released: list[object] = []
    real_release = sending.idempotency.release

    async def stop_arrives_while_waiting():
        # BROADCAST_SENDS_PER_SECOND made this send wait for its slot: the person's STOP lands.
        await optouts.set_opted_out(TWILIO_NUMBER, PERSON, True, "keyword STOP")

    async def release(claims):
        released.extend(claims)
        await real_release(claims)

    monkeypatch.setattr(sending.pace, "take_slot", stop_arrives_while_waiting)
    monkeypatch.setattr(sending.idempotency, "release", release)
    run_app(broadcast_send.main(queue_message(chunk)))

    assert [c.data["To"] for c in twilio_api.creates] == []
    assert len(released) == 1  # the claim taken for the text that never left
    assert [r["state"] for r in status(worker_host, answer["id"])["recipients"]] == ["refused"]


# --- an opt-out silently not kept: no ERROR line ----------------------------------------------

def test_an_opt_out_that_cannot_be_keyed_is_logged(worker_host, caplog):
    caplog.set_level(logging.INFO)
    text_in(worker_host, "STOP", person="+1415555/0142", MessageSid=sid())

    assert any("opt-out-not-kept" in r.getMessage() for r in caplog.records
               if r.levelno >= logging.ERROR)

