"""Texts that come in (issue 22) are kept: sms_url records each one (who, to which number, what
it said, its media, the keyword it was) and GET /api/messages shows it beside the app's own;
with storage slow or down nobody is texted (the opt-outs cannot be read) and the miss is logged
with the MessageSid."""

from __future__ import annotations

import logging
import uuid

import pytest
from conftest import TWILIO_NUMBER
from test_opt_outs import PERSON, replies, text_in

from devhost.worker_host import WorkerHost

PUBLIC = "https://myapp.azurewebsites.net"


@pytest.fixture(autouse=True)
def storage(texting_storage):
    return texting_storage


def message(host: WorkerHost, sid: str) -> dict:
    response = host.request("GET", f"/api/messages/{sid}", base_url=PUBLIC)
    assert response.status == 200, response.body
    return response.json()


def test_an_inbound_text_is_kept_and_listed(worker_host):
    sid = "SM" + "a1" * 16
    media = {"NumMedia": "2", "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/"
             "MM/Media/ME1", "MediaUrl1": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/"
             "MM/Media/ME2"}

    answered = text_in(worker_host, "Is the shop open on Sunday?", MessageSid=sid, **media)

    assert replies(answered) == ["Hey, thanks for the ping! Twilio and Azure rock!"]
    record = message(worker_host, sid)
    assert (record["direction"], record["status"]) == ("inbound", "received")
    assert (record["from"], record["to"], record["text"]) == (
        PERSON, TWILIO_NUMBER, "Is the shop open on Sunday?")
    assert record["num_media"] == 2
    assert record["media_urls"] == [media["MediaUrl0"], media["MediaUrl1"]]
    assert record["keyword"] is None and record["forwarded_to"] == 0
    listed = worker_host.request("GET", "/api/messages?limit=50", base_url=PUBLIC).json()
    assert sid in [item["sid"] for item in listed["messages"]]


def test_a_keyword_is_kept_on_the_record(worker_host):
    sid = "SM" + "a2" * 16

    text_in(worker_host, " stop! ", MessageSid=sid)

    assert message(worker_host, sid)["keyword"] == "STOP"


def test_a_text_twilio_delivers_twice_is_kept_once(worker_host):
    sid = "SM" + "a3" * 16

    first = text_in(worker_host, "hello", MessageSid=sid)
    again = text_in(worker_host, "hello", MessageSid=sid)

    assert replies(first) == replies(again)
    listed = worker_host.request("GET", "/api/messages?limit=100", base_url=PUBLIC).json()
    assert [item["sid"] for item in listed["messages"]].count(sid) == 1


def test_with_storage_down_the_answer_texts_nobody_and_the_miss_is_logged(
    worker_host, storage, caplog
):
    """The opt-outs cannot be read: no reply (the sender may have said STOP to another of the
    app's numbers, which Twilio would not block: an attack run's), never a 500."""
    caplog.set_level(logging.ERROR)
    storage.stop()
    try:
        answered = text_in(worker_host, "hello", MessageSid="SM" + "a4" * 16)
    finally:
        storage.start()

    assert replies(answered) == []
    [line] = [r.getMessage() for r in caplog.records if "outcome=text-not-kept" in r.getMessage()]
    assert "MessageSid=SMa4a4" in line
    [unread] = [r.getMessage() for r in caplog.records
                if "outcome=opt-outs-unread" in r.getMessage()]
    assert "about=+1415" in unread
    assert PERSON not in caplog.text


# --- a reply goes only where send_sms may text (SMS pumping through auto-replies) -------------

@pytest.mark.parametrize(("sender", "where"), [
    ("+447400123456", {"FromCountry": "GB"}),     # a country SMS_ALLOWED_COUNTRIES leaves out
    ("+18765550123", {"FromCountry": "JM"}),      # NANP, but not the US: Jamaica
    ("+881631234567", {}),                        # satellite: Twilio names no country
    ("12345", {}),                                # a short code: a text to it may cost
    ("ACME", {}),                                 # an alphanumeric sender
])
def test_a_text_from_where_send_sms_may_not_text_is_kept_and_not_replied_to(
    worker_host, caplog, sender, where
):
    sid = "SM" + uuid.uuid4().hex  # a text of its own per case (storage outlives a test)

    answered = text_in(worker_host, "hi", person=sender, MessageSid=sid, ToCountry="US", **where)

    assert replies(answered) == []
    assert message(worker_host, sid)["from"] == sender  # kept all the same
    [line] = [r.getMessage() for r in caplog.records if "outcome=not-replied" in r.getMessage()]
    assert f"MessageSid={sid}" in line and sender not in line  # the number is redacted


@pytest.mark.parametrize(("sender", "replied"), [("+447400123456", False),
                                               ("+14155550123", True)])
def test_a_from_country_that_is_not_a_country_code_is_neither_believed_nor_logged(
    worker_host, caplog, sender, replied
):
    """FromCountry went into the log line as it came (a full number, 30 KB) and was matched as
    it came: now the sender's own number says where it is."""
    sid = "SM" + uuid.uuid4().hex

    answered = text_in(worker_host, "hi", person=sender, MessageSid=sid, ToCountry="US",
                       FromCountry=sender + "x" * 3000)

    assert bool(replies(answered)) is replied
    lines = [r.getMessage() for r in caplog.records if "outcome=not-replied" in r.getMessage()]
    assert all(sender not in line and "xxx" not in line for line in lines)
    assert ["country (GB)" in line for line in lines] == ([] if replied else [True])


def test_help_gets_no_reply_from_where_send_sms_may_not_text(worker_host, app_settings):
    app_settings.setenv("SMS_HELP_REPLY", "Contoso alerts. Reply STOP to stop.")

    assert replies(text_in(worker_host, "HELP", person="+447400123456", FromCountry="GB",
                           ToCountry="US")) == []
    assert replies(text_in(worker_host, "HELP", FromCountry="US", ToCountry="US")) == [
        "Contoso alerts. Reply STOP to stop."]


def test_a_country_sms_allowed_countries_names_is_replied_to(worker_host, app_settings):
    app_settings.setenv("SMS_ALLOWED_COUNTRIES", "US,GB")

    answered = text_in(worker_host, "hi", person="+447400123456", FromCountry="GB", ToCountry="US")

    assert replies(answered) == ["Hey, thanks for the ping! Twilio and Azure rock!"]


def test_a_text_from_the_apps_own_number_gets_no_reply(worker_host):
    """Two of the app's numbers would otherwise answer each other's replies for ever."""
    for texted in (TWILIO_NUMBER, "+14155550178"):  # itself; another of its numbers
        assert replies(text_in(worker_host, "hi", person=TWILIO_NUMBER, To=texted,
                               FromCountry="US", ToCountry="US")) == []


def test_a_text_to_another_number_abroad_is_replied_to_only_where_send_sms_may_text(
        worker_host, app_settings):
    """Unset, SMS_ALLOWED_COUNTRIES means TWILIO_PHONE_NUMBER's country (US here), as for
    send_sms: not the country of whichever of the account's numbers was texted (a UK one)."""
    app_settings.setenv("SMS_SENDERS", "+447911123456")

    assert replies(text_in(worker_host, "hello", person="+447400123456", To="+447911123456",
                           FromCountry="GB", ToCountry="GB")) == []
    assert replies(text_in(worker_host, "hello", FromCountry="US", ToCountry="US")) == [
        "Hey, thanks for the ping! Twilio and Azure rock!"]


def test_a_text_from_another_of_the_apps_numbers_gets_no_reply(worker_host, app_settings):
    """SMS_SENDERS are the app's numbers too: a reply to one comes back to sms_url."""
    app_settings.setenv("SMS_SENDERS", "+14155550177")

    assert replies(text_in(worker_host, "hi", person="+14155550177", FromCountry="US",
                           ToCountry="US")) == []


def test_help_gets_no_reply_once_the_sender_opted_out(worker_host, app_settings):
    """Whoever texted STOP is not texted again, not even the help reply."""
    app_settings.setenv("SMS_HELP_REPLY", "Contoso alerts. Reply STOP to stop.")
    assert replies(text_in(worker_host, "HELP")) == ["Contoso alerts. Reply STOP to stop."]

    text_in(worker_host, "STOP")

    assert replies(text_in(worker_host, "HELP")) == []
    text_in(worker_host, "START")
    assert replies(text_in(worker_host, "HELP")) == ["Contoso alerts. Reply STOP to stop."]


def test_without_twilios_countries_the_number_library_judges_the_sender(worker_host):
    assert replies(text_in(worker_host, "hi")) == [  # PERSON, a US number, to a US number
        "Hey, thanks for the ping! Twilio and Azure rock!"]
    assert replies(text_in(worker_host, "hi", person="+447400123456")) == []
