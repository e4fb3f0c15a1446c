"""Opt-outs (issue 22) through the real worker, Azurite and the Twilio double: a keyword texted to
sms_url (signed as Twilio signs) is kept, and every way the app texts honours it: send_sms
refuses before Twilio hears anything, broadcasts refuse and skip, Twilio's 21610 is learnt;
calls are not affected."""

from __future__ import annotations

import base64
import json
import logging
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from conftest import ACCOUNT_SID, AUTH_TOKEN, TWILIO_NUMBER, run_app, signature
from test_broadcasts import drain, queue_message, status
from twilio_double import new_sid

import broadcast_send
from devhost.worker_host import HostResponse, WorkerHost
from shared.records import optouts
from shared.webhooks.settings import DEFAULT_SMS_REPLY

PUBLIC = "https://myapp.azurewebsites.net"
SMS_URL = f"{PUBLIC}/api/sms_url"
PERSON = "+14155550142"
SERVICE = "MG" + "d" * 32


@pytest.fixture(autouse=True)
def storage(texting_storage):
    return texting_storage


def text_in(host: WorkerHost, body: str, person: str = PERSON, **extra: str) -> HostResponse:
    """What Twilio sends sms_url for an inbound text, signed; a fresh MessageSid unless given."""
    params = {"MessageSid": new_sid("SM"), "AccountSid": ACCOUNT_SID, "From": person,
              "To": TWILIO_NUMBER, "Body": body, "NumMedia": "0", **extra}
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": signature(SMS_URL, params, AUTH_TOKEN)}
    return host.request("POST", SMS_URL, headers=headers, body=urlencode(params), base_url=PUBLIC)


def replies(response: HostResponse) -> list[str]:
    assert response.status == 200, response.body
    root = ET.fromstring(response.body)
    assert root.tag == "Response"
    return [m.text or "" for m in root.findall("Message")]


def send_sms(host: WorkerHost, to: str = PERSON, key: str | None = None) -> HostResponse:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return host.request("POST", "/api/send_sms", headers=headers,
                        body=json.dumps({"to": to, "body": "Your order shipped"}),
                        base_url=PUBLIC)


@pytest.mark.parametrize("word", ["STOP", "stop", "  Stop. ", "STOPALL", "unsubscribe!", "Cancel",
                                  "END", "quit", "OPTOUT", "revoke", "STOP STOP",
                                  "Stop. Stop.", "stop stop stop", "STOP!!! STOP!!!", "stop end"])
def test_an_opt_out_keyword_gets_no_reply_and_stops_send_sms(worker_host, twilio_api, word):
    assert replies(text_in(worker_host, word)) == []

    refused = send_sms(worker_host)

    assert refused.status == 422
    assert "opted out" in refused.json()["error"] and "START" in refused.json()["error"]
    assert twilio_api.creates == []  # Twilio heard nothing


@pytest.mark.parametrize(("name", "value"), [("VOICE_NAME", "Polly Joanna<b>"),
                                             ("VOICE_LANGUAGE", "english please")])
def test_a_malformed_call_setting_never_keeps_a_stop_from_being_honoured(
    worker_host, twilio_api, app_settings, name, value
):
    """The text webhooks read only the texts' settings: a voice setting that breaks the calls'
    webhooks leaves STOP kept and the replies going out."""
    app_settings.setenv(name, value)

    assert replies(text_in(worker_host, "Hello")) == [DEFAULT_SMS_REPLY]
    assert replies(text_in(worker_host, "STOP")) == []
    assert send_sms(worker_host).status == 422
    assert twilio_api.creates == []


@pytest.mark.parametrize("text", ["stop please", "Don't stop", "stop, start"])
def test_a_text_that_only_contains_a_keyword_is_an_ordinary_text(worker_host, twilio_api, text):
    assert replies(text_in(worker_host, text)) == [
        "Hey, thanks for the ping! Twilio and Azure rock!"]
    assert send_sms(worker_host).status == 201


@pytest.mark.parametrize("word", ["START", "unstop", "Yes"])
def test_start_opts_back_in(worker_host, twilio_api, word):
    text_in(worker_host, "STOP")
    assert send_sms(worker_host).status == 422

    assert replies(text_in(worker_host, word)) == []  # Twilio's own confirmation is the reply

    assert send_sms(worker_host).status == 201
    assert len(twilio_api.creates) == 1


def test_an_opt_out_covers_every_number_the_app_texts_from(worker_host, twilio_api,
                                                          app_settings):
    """Whoever texted STOP to one of the app's numbers is not texted from another: not by
    send_sms, not through a Messaging Service set up afterwards, not by a broadcast."""
    app_settings.setenv("SMS_SENDERS", "+14155550199")
    text_in(worker_host, "STOP", To="+14155550199")  # to another of the app's numbers

    from_other = worker_host.request(
        "POST", "/api/send_sms", headers={"Content-Type": "application/json"},
        body=json.dumps({"to": PERSON, "body": "hi", "from": "+14155550199"}), base_url=PUBLIC)

    assert from_other.status == 422
    assert send_sms(worker_host).status == 422  # from TWILIO_NUMBER: the same person
    app_settings.setenv("TWILIO_MESSAGING_SERVICE_SID", SERVICE)
    assert send_sms(worker_host).status == 422  # through a service set up since
    answer = start_broadcast(worker_host, [PERSON, "+14155550143"])
    assert [r["to"] for r in answer["refused"]] == [PERSON]
    assert twilio_api.creates == []


def test_a_start_to_one_number_reopens_it_but_not_the_one_they_stopped(worker_host, twilio_api,
                                                                       app_settings):
    """Their latest word decides for the app's other numbers; the number they stopped stays
    closed until they START it (Twilio blocks it too: a text from it would come back 21610, be
    kept as a new STOP, and close the number they reopened)."""
    app_settings.setenv("SMS_SENDERS", "+14155550199")
    text_in(worker_host, "STOP", To="+14155550199")
    text_in(worker_host, "START")  # later, to TWILIO_NUMBER

    from_stopped = worker_host.request(
        "POST", "/api/send_sms", headers={"Content-Type": "application/json"},
        body=json.dumps({"to": PERSON, "body": "hi", "from": "+14155550199"}), base_url=PUBLIC)

    assert from_stopped.status == 422 and twilio_api.creates == []
    assert send_sms(worker_host).status == 201
    assert send_sms(worker_host).status == 201  # still: nothing came back to close it


def test_a_stop_and_a_start_at_the_same_moment_count_as_stop():
    from shared.records.optouts import _blocked

    rows = [{"PartitionKey": "B", "RowKey": PERSON, "OptedOut": False, "ChangedAt": "t1"},
            {"PartitionKey": "A", "RowKey": PERSON, "OptedOut": True, "ChangedAt": "t1"}]
    assert _blocked(rows, "B") == _blocked(rows[::-1], "B") == {PERSON}
    assert _blocked([{**rows[1], "ChangedAt": None}, {**rows[0], "ChangedAt": "t2"}], "B") == {
        PERSON}  # a STOP with no time is a STOP


def test_an_opt_out_through_a_messaging_service_covers_its_texts(
    worker_host, twilio_api, app_settings
):
    app_settings.setenv("TWILIO_MESSAGING_SERVICE_SID", SERVICE)
    text_in(worker_host, "STOP", MessagingServiceSid=SERVICE)

    assert send_sms(worker_host).status == 422
    assert twilio_api.creates == []


UNLISTED = "+14155550177"  # one of the account's numbers, pointed at sms_url, not in the settings


def test_a_stop_to_a_number_the_app_does_not_text_from_covers_every_one_it_does(
    worker_host, twilio_api, storage
):
    """The person said STOP to this app: kept under the number they texted, which nothing
    texts from, and under every sender the app does text from; START to it reopens them."""
    text_in(worker_host, "STOP", To=UNLISTED)

    assert send_sms(worker_host).status == 422
    answer = start_broadcast(worker_host, [PERSON, "+14155550143"])
    assert [r["to"] for r in answer["refused"]] == [PERSON]
    assert replies(text_in(worker_host, "Are you open?")) == []  # to TWILIO_NUMBER
    assert twilio_api.creates == []
    text_in(worker_host, "START", To=UNLISTED)
    assert send_sms(worker_host).status == 201


def test_a_stop_through_a_service_the_app_no_longer_uses_still_counts(worker_host, twilio_api):
    text_in(worker_host, "STOP", To=UNLISTED, MessagingServiceSid=SERVICE)

    assert send_sms(worker_host).status == 422  # TWILIO_MESSAGING_SERVICE_SID unset since
    assert twilio_api.creates == []


def test_an_opt_out_through_the_apps_service_stops_the_replies_from_its_number(
    worker_host, twilio_api, app_settings
):
    """send_sms honours the service's opt-outs, and so do the answers to the person's texts to
    TWILIO_PHONE_NUMBER (outside the service): no reply, not even SMS_HELP_REPLY."""
    app_settings.setenv("TWILIO_MESSAGING_SERVICE_SID", SERVICE)
    app_settings.setenv("SMS_HELP_REPLY", "Contoso alerts. Reply STOP to stop.")
    text_in(worker_host, "STOP", To=UNLISTED, MessagingServiceSid=SERVICE)

    assert replies(text_in(worker_host, "Are you open?")) == []
    assert replies(text_in(worker_host, "HELP")) == []
    assert send_sms(worker_host).status == 422
    assert twilio_api.creates == []


@pytest.mark.parametrize("word", ["HELP", "info", "Help?"])
def test_help_gets_sms_help_reply_when_it_is_set(worker_host, app_settings, word):
    assert replies(text_in(worker_host, word)) == []
    app_settings.setenv("SMS_HELP_REPLY", "Contoso alerts. Reply STOP to stop.")
    assert replies(text_in(worker_host, word)) == ["Contoso alerts. Reply STOP to stop."]


def test_twilio_21610_is_kept_as_an_opt_out(worker_host, twilio_api):
    twilio_api.error(400, 21610, "Attempt to send to unsubscribed recipient")
    first = send_sms(worker_host)

    second = send_sms(worker_host)

    assert first.status == 422 and first.json()["twilio_code"] == 21610
    assert second.status == 422 and "opted out" in second.json()["error"]
    assert len(twilio_api.requests) == 1  # the second never reached Twilio


def message_status(host: WorkerHost, message_sid: str, status: str, error_code: str,
                   **extra: str) -> HostResponse:
    """The status callback Twilio POSTs for a text the app sent, signed."""
    url = f"{PUBLIC}/api/message_status"
    params = {"MessageSid": message_sid, "AccountSid": ACCOUNT_SID, "From": TWILIO_NUMBER,
              "To": PERSON, "MessageStatus": status, "ErrorCode": error_code, **extra}
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": signature(url, params, AUTH_TOKEN)}
    return host.request("POST", url, headers=headers, body=urlencode(params), base_url=PUBLIC)


@pytest.mark.parametrize("extra", [{}, {"MessagingServiceSid": SERVICE}],
                         ids=["from-the-number", "through-a-messaging-service"])
def test_twilio_21610_in_a_status_callback_is_kept_as_an_opt_out(worker_host, twilio_api, extra):
    """A text Twilio queued (201) and then failed with 21610 (a Messaging Service's, say) said
    so only in its status callback, which stored the code and kept no opt-out: the app went on
    texting (an attack run's)."""
    sent = send_sms(worker_host)
    assert sent.status == 201

    assert message_status(worker_host, sent.json()["sid"], "failed", "21610", **extra).status \
        == 204

    again = send_sms(worker_host)
    assert again.status == 422 and "opted out" in again.json()["error"]
    assert len(twilio_api.creates) == 1  # the second never reached Twilio


def test_another_failure_in_a_status_callback_is_not_an_opt_out(worker_host, twilio_api):
    sent = send_sms(worker_host)

    assert message_status(worker_host, sent.json()["sid"], "undelivered", "30007").status == 204

    assert send_sms(worker_host).status == 201


def test_an_opt_out_refusal_replays_under_its_idempotency_key(worker_host, twilio_api):
    text_in(worker_host, "STOP")
    first = send_sms(worker_host, key="order-77-shipped")
    text_in(worker_host, "START")

    again = send_sms(worker_host, key="order-77-shipped")
    fresh = send_sms(worker_host, key="order-77-shipped-2")

    assert (first.status, again.status, fresh.status) == (422, 422, 201)
    assert again.json() == first.json()
    assert len(twilio_api.creates) == 1


def test_calls_are_not_affected(worker_host, twilio_api):
    text_in(worker_host, "STOP")
    assert send_sms(worker_host).status == 422  # the opt-out was kept

    call = worker_host.request("POST", "/api/make_call", headers={"Content-Type":
                               "application/json"}, body=json.dumps({"to": PERSON}),
                               base_url=PUBLIC)

    assert call.status == 201, call.body


def test_send_sms_sends_nothing_when_the_opt_outs_cannot_be_read(worker_host, twilio_api,
                                                                  storage):
    storage.stop()
    try:
        response = send_sms(worker_host)
    finally:
        storage.start()

    assert response.status == 503
    assert "opt-out" in response.json()["error"] and response.headers["Retry-After"]
    assert twilio_api.requests == []


def test_a_stop_is_answered_while_storage_is_down_and_learnt_from_21610_later(
    worker_host, twilio_api, storage, caplog
):
    caplog.set_level(logging.ERROR)
    storage.stop()
    try:
        answered = text_in(worker_host, "STOP")
    finally:
        storage.start()
    twilio_api.error(400, 21610, "Attempt to send to unsubscribed recipient")
    send_sms(worker_host)

    assert replies(answered) == []  # never a 500
    assert any("outcome=opt-out-not-kept" in r.getMessage() and "MessageSid=SM" in r.getMessage()
               for r in caplog.records)
    assert PERSON not in caplog.text
    assert send_sms(worker_host).status == 422  # learnt from Twilio's 21610


# --- broadcasts -----------------------------------------------------------------------------

def start_broadcast(host: WorkerHost, to: list[str]) -> dict:
    response = host.request("POST", "/api/broadcasts", headers={"Content-Type":
                            "application/json"}, body=json.dumps({"kind": "sms", "to": to,
                                                                  "body": "Sale today"}),
                            base_url=PUBLIC)
    assert response.status == 202, response.body
    return response.json()


def test_a_broadcast_refuses_opted_out_recipients_and_never_queues_them(
    worker_host, twilio_api, storage
):
    text_in(worker_host, "STOP")

    answer = start_broadcast(worker_host, [PERSON, "+14155550143"])
    [chunk] = drain(storage, answer["id"])

    assert answer["accepted"] == 1
    assert [r["to"] for r in answer["refused"]] == [PERSON]
    assert "opted out" in answer["refused"][0]["error"]
    assert chunk["recipients"] == ["+14155550143"]


def test_a_recipient_who_opts_out_after_the_broadcast_began_is_skipped_as_refused(
    worker_host, twilio_api, storage
):
    answer = start_broadcast(worker_host, [PERSON, "+14155550143"])
    [chunk] = drain(storage, answer["id"])
    text_in(worker_host, "STOP")

    run_app(broadcast_send.main(queue_message(chunk)))

    shown = status(worker_host, answer["id"])
    states = {r["to"]: r["state"] for r in shown["recipients"]}
    assert states == {PERSON: "refused", "+14155550143": "sent"}
    assert shown["counts"] == {"queued": 0, "sent": 1, "failed": 0, "refused": 1}
    assert [c.data["To"] for c in twilio_api.creates] == ["+14155550143"]


def test_a_broadcast_recipient_refused_with_21610_is_refused_and_kept(
    worker_host, twilio_api, storage
):
    answer = start_broadcast(worker_host, [PERSON])
    [chunk] = drain(storage, answer["id"])
    twilio_api.error(400, 21610, "Attempt to send to unsubscribed recipient")

    run_app(broadcast_send.main(queue_message(chunk)))

    [recipient] = status(worker_host, answer["id"])["recipients"]
    assert recipient["state"] == "refused" and recipient["error"].startswith("21610: ")
    assert send_sms(worker_host).status == 422


# --- the opt-outs over HTTP (GET /api/optouts, POST /api/optouts/clear) ------------------------

def optouts_get(host: WorkerHost, query: str = "") -> HostResponse:
    return host.request("GET", f"/api/optouts{query}", base_url=PUBLIC)


def clear(host: WorkerHost, body: object, who: str | None = None) -> HostResponse:
    headers = {"Content-Type": "application/json"}
    if who:
        headers["X-MS-CLIENT-PRINCIPAL-NAME"] = who
    return host.request("POST", "/api/optouts/clear", headers=headers, body=json.dumps(body),
                        base_url=PUBLIC)


def test_the_opt_outs_are_listed_a_page_at_a_time(worker_host, twilio_api, app_settings):
    app_settings.setenv("SMS_SENDERS", "+14155550199")  # another sender of the app's
    for person in ("+14155550151", "+14155550152", "+14155550153"):
        text_in(worker_host, "STOP", person=person)
    text_in(worker_host, "STOP", person="+14155550154", To="+14155550199")

    first = optouts_get(worker_host, f"?sender=%2B{TWILIO_NUMBER[1:]}&limit=2").json()
    # Its next_url keeps the filter: without `sender` the next page ran on into the other
    # senders' opt-outs (an attack run's).
    assert first["next_url"].startswith("/api/optouts?sender=%2B")
    rest = worker_host.request("GET", first["next_url"], base_url=PUBLIC).json()
    everyone = optouts_get(worker_host).json()

    assert [o["number"] for o in first["optouts"] + rest["optouts"]] == [
        "+14155550151", "+14155550152", "+14155550153"]
    assert first["optouts"][0]["how"] == "keyword STOP" and rest["next"] is None
    assert len(everyone["optouts"]) == 4


def test_clearing_an_opt_out_lets_the_app_text_again_and_says_who_and_why(
    worker_host, twilio_api, app_settings, storage
):
    app_settings.setenv("WEBSITE_AUTH_ENABLED", "True")  # the platform vouches for the header
    text_in(worker_host, "STOP")

    cleared = clear(worker_host, {"sender": TWILIO_NUMBER, "number": PERSON,
                                  "reason": "test number"}, who="ops@contoso.com")

    assert cleared.status == 200, cleared.body
    assert cleared.json()["opted_out"] is False
    assert cleared.json()["how"] == "cleared by ops@contoso.com: test number"
    assert optouts_get(worker_host).json()["optouts"] == []
    assert send_sms(worker_host).status == 201
    # The row is the clear alone: it kept the STOP's MessageSid beside the clear's How and
    # time, a consent record that mixed two words (an attack run's).
    from azure.data.tables import TableClient

    with TableClient.from_connection_string(storage.connection_string, optouts.TABLE) as table:
        row = table.get_entity(TWILIO_NUMBER, PERSON)
    assert "MessageSid" not in row


def test_the_reason_for_clearing_is_kept_on_the_row_but_never_logged(worker_host, twilio_api,
                                                                     caplog):
    """The reason is an operator's free text ("+1415... phoned: said 'my PIN is 4455'")."""
    text_in(worker_host, "STOP")
    reason = "+14155550123 phoned: said 'my PIN is 4455'"

    with caplog.at_level(logging.DEBUG):
        cleared = clear(worker_host, {"sender": TWILIO_NUMBER, "number": PERSON,
                                      "reason": reason})

    assert cleared.json()["how"] == f"cleared by a function key holder: {reason}"
    assert any("outcome=opted-in how=cleared by a function key holder" in r.getMessage()
               for r in caplog.records)
    assert "4155550123" not in caplog.text and "PIN" not in caplog.text


def test_the_longest_name_and_reason_are_kept_whole(worker_host, twilio_api, app_settings):
    """A 100-character principal name and a 200-character reason: the record of consent keeps
    all of both (an attack run's: the reason's end, a ticket number, was cut)."""
    app_settings.setenv("WEBSITE_AUTH_ENABLED", "True")
    text_in(worker_host, "STOP")
    who, reason = "a" * 100, "asked by phone to be texted again; " + "x" * 153 + " ticket 4411"
    assert len(reason) == 200

    cleared = clear(worker_host, {"sender": TWILIO_NUMBER, "number": PERSON, "reason": reason},
                    who=who)

    assert cleared.status == 200, cleared.body
    assert cleared.json()["how"] == f"cleared by {who}: {reason}"


def test_without_app_service_authentication_a_principal_header_names_nobody(worker_host):
    text_in(worker_host, "STOP")

    cleared = clear(worker_host, {"sender": TWILIO_NUMBER, "number": PERSON},
                    who="someone-else@contoso.com")

    assert cleared.json()["how"] == "cleared by a function key holder"


@pytest.mark.parametrize(("body", "status"), [
    ({"sender": TWILIO_NUMBER, "number": PERSON}, 404),  # not opted out
    ({"sender": "14155550100", "number": PERSON}, 400),
    ({"sender": TWILIO_NUMBER, "number": "nobody"}, 400),
    ({"sender": TWILIO_NUMBER, "number": PERSON, "reason": "x" * 201}, 400),
    (["not", "an", "object"], 400),
    ({"sender": TWILIO_NUMBER, "number": PERSON, "who": "me"}, 400),
    ({"sender": TWILIO_NUMBER, "number": PERSON, "reason": "x" * 20_000}, 413),
], ids=["not-opted-out", "bad-sender", "bad-number", "long-reason", "not-an-object",
        "unknown-field", "too-large"])
def test_clearing_says_what_is_wrong(worker_host, body, status):
    response = clear(worker_host, body)

    assert response.status == status
    assert response.json()["error"]


def test_the_opt_outs_need_the_function_key():
    from conftest import REPO

    with WorkerHost.start(REPO, function_keys={"optouts": "optouts-key-for-tests"}) as keyed:
        assert keyed.request("GET", "/api/optouts", base_url=PUBLIC).status == 401
        assert keyed.request("GET", "/api/optouts", base_url=PUBLIC,
                             headers={"x-functions-key": "optouts-key-for-tests"}).status == 200


@pytest.mark.parametrize("token", [
    # A lone surrogate: valid JSON, but no request can carry it (the SDK raised
    # UnicodeEncodeError: an anonymous 500).
    {"PartitionKey": "optout", "RowKey": "\ud800"},
    # A key longer than any storage takes in a request line: Azurite answers 431. Storage will
    # never take it, so it is the caller's 400, not a 503 asking to try again.
    {"PartitionKey": "x" * 20_000, "RowKey": "x"},
], ids=["lone-surrogate", "refused-by-storage"])
def test_a_continuation_storage_cannot_take_is_the_callers_400(worker_host, twilio_api, token):
    encoded = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()

    listed = optouts_get(worker_host, f"?continuation={encoded}")

    assert listed.status == 400, listed.body
    assert "continuation" in listed.json()["error"]
    assert "Retry-After" not in listed.headers
