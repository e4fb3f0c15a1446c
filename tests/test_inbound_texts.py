"""Texts that come in (issue 22) are kept: sms_url records each one (who, to which number, what
it said, its media, the keyword it was) and GET /api/messages shows it beside the app's own;
with storage slow or down the reply still goes out and the miss is logged with the MessageSid."""

from __future__ import annotations

import logging

import pytest
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
        PERSON, "+14155550100", "Is the shop open on Sunday?")
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


def test_with_storage_down_the_reply_still_goes_out_and_the_miss_is_logged(
    worker_host, storage, caplog
):
    caplog.set_level(logging.ERROR)
    storage.stop()
    try:
        answered = text_in(worker_host, "hello", MessageSid="SM" + "a4" * 16)
    finally:
        storage.start()

    assert replies(answered) == ["Hey, thanks for the ping! Twilio and Azure rock!"]
    [line] = [r.getMessage() for r in caplog.records if "outcome=text-not-kept" in r.getMessage()]
    assert "MessageSid=SMa4a4" in line
    assert PERSON not in caplog.text
