"""Never twice, never lost, round two (issue 19): what an attack run on the local host found in
idempotency, broadcasts and callbacks, each through the real worker, Azurite and the Twilio
double. Each test fails without its fix."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import hashlib
import json
import logging
import uuid

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from azure.data.tables import TableClient, UpdateMode
from azure.functions.queue import QueueMessage
from conftest import ACCOUNT_SID, TWILIO_NUMBER, run_app, signed_form_request
from test_broadcasts import drain

import broadcast_poison
import broadcast_send
from devhost.worker_host import HostResponse, WorkerHost
from shared.broadcasts import model, sending
from shared.broadcasts import queue as broadcast_queue
from shared.broadcasts import starting as broadcast_starting
from shared.broadcasts import table as broadcast_table
from shared.records import idempotency, storage

PUBLIC = "https://myapp.azurewebsites.net"
TO = "+14155550177"


@pytest.fixture
def store(azurite, app_settings):
    app_settings.setenv("AzureWebJobsStorage", azurite.connection_string)
    return azurite


def post(host: WorkerHost, path: str, body: dict | str, key: str | None = None,
         headers: dict[str, str] | None = None) -> HostResponse:
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["Idempotency-Key"] = key
    data = body if isinstance(body, str) else json.dumps(body)
    return host.request("POST", path, headers=sent, body=data, base_url=PUBLIC)


def get(host: WorkerHost, path: str) -> HostResponse:
    return host.request("GET", path, base_url=PUBLIC)


def queue_message(body: dict | str | bytes, dequeue_count: int = 1) -> QueueMessage:
    data = body if isinstance(body, bytes) else (
        body if isinstance(body, str) else json.dumps(body)).encode()
    return QueueMessage(id=f"msg-{uuid.uuid4().hex[:8]}", body=data,
                        dequeue_count=dequeue_count,
                        insertion_time=datetime.datetime.now(datetime.UTC))


def run(main, message: QueueMessage) -> None:
    run_app(main(message))


def refused_to_connect() -> aiohttp.ClientConnectorError:
    key = ConnectionKey("api.twilio.com", 443, True, True, None, None, None, "api.twilio.com")
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


# --- 1. an unknown outcome never adopts another request's call or text ----------------------

ENDPOINTS = [("/api/make_call", {"to": TO, "message": "Table ready"}),
             ("/api/send_sms", {"to": TO, "body": "Table ready"})]


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=["make_call", "send_sms"])
def test_an_unknown_outcome_never_adopts_what_another_request_created(
    worker_host, store, twilio_api, app_settings, monkeypatch, path, body
):
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    twilio_api.delay = 0.5  # Twilio never got to it: nothing was created
    key = str(uuid.uuid4())
    assert post(worker_host, path, body, key).status == 504
    twilio_api.delay = 0
    other = post(worker_host, path, body)  # another request, no key: the same call or text
    assert other.status == 201

    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))
    waiting = post(worker_host, path, body, key)
    monkeypatch.setattr(idempotency, "RELEASE_AFTER", datetime.timedelta(0))
    released = post(worker_host, path, body, key)

    assert waiting.status == 409  # the other request's SID is not this key's
    assert released.status == 201 and "Idempotent-Replayed" not in released.headers
    assert released.json()["sid"] not in (other.json()["sid"],)
    assert len(twilio_api.created) == 2  # the keyed one is placed after all, once


def test_a_text_sent_outside_the_app_with_another_body_is_not_adopted(
    worker_host, store, twilio_api, app_settings, monkeypatch
):
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    twilio_api.delay = 0.5
    key = str(uuid.uuid4())
    assert post(worker_host, "/api/send_sms", {"to": TO, "body": "Yours"}, key).status == 504
    twilio_api.delay = 0
    # A text to the same number from the same sender, sent from the Console: no record of ours.
    twilio_api.created.append({
        "sid": "SM" + uuid.uuid4().hex, "account_sid": ACCOUNT_SID, "to": TO,
        "from": TWILIO_NUMBER, "body": "Someone else's", "status": "sent", "num_media": "0",
        "date_created": email.utils.formatdate(usegmt=True),
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SMx.json",
    })
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))

    answer = post(worker_host, "/api/send_sms", {"to": TO, "body": "Yours"}, key)

    assert answer.status == 409  # not found yet; released later, never that text's SID


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=["make_call", "send_sms"])
def test_a_refused_connection_releases_the_key_without_a_lookup(
    worker_host, store, twilio_api, path, body
):
    twilio_api.fail(refused_to_connect())
    key = str(uuid.uuid4())

    first = post(worker_host, path, body, key)
    retried = post(worker_host, path, body, key)

    assert first.status == 503 and first.headers["Retry-After"]
    assert "not" in first.json()["error"] and "try again" in first.json()["error"]
    assert retried.status == 201 and "Idempotent-Replayed" not in retried.headers
    assert [r.method for r in twilio_api.requests] == ["POST", "POST"]  # no GET: no lookup


def start(host: WorkerHost, body: dict, key: str | None = None) -> HostResponse:
    return post(host, "/api/broadcasts", body, key)


def test_a_broadcast_recipient_never_takes_another_texts_sid(
    worker_host, store, twilio_api, app_settings, monkeypatch
):
    monkeypatch.setattr(sending, "JITTER", 0.0)
    monkeypatch.setattr(sending, "UNKNOWN_OUTCOME_WAIT", 0.0)
    answer = start(worker_host, {"kind": "sms", "to": [TO], "body": "Open late"}).json()
    [chunk] = drain(store, answer["id"])
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    twilio_api.delay = 0.5
    run(broadcast_send.main, queue_message(chunk))  # timed out before Twilio made it: deferred
    twilio_api.delay = 0
    other = post(worker_host, "/api/send_sms", {"to": TO, "body": "Open late"})
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))
    [later] = drain(store, answer["id"])
    with pytest.raises(sending.TryAgain):
        run_app(sending.deliver(_task(later)))  # 409: nothing of its own found
    monkeypatch.setattr(idempotency, "RELEASE_AFTER", datetime.timedelta(0))
    run(broadcast_send.main, queue_message(later))

    shown = get(worker_host, answer["status_url"]).json()
    [recipient] = shown["recipients"]
    assert recipient["state"] == "sent"
    assert recipient["sid"] != other.json()["sid"]
    assert len(twilio_api.created) == 2


def _task(message: dict) -> model.Task:
    envelope = model.read_message(json.dumps(message).encode())
    broadcast, [to] = run_app(broadcast_table.open_message(envelope, "test", "m"))
    assert broadcast is not None
    return broadcast.task(to, envelope.deferrals)


# --- 2. a broadcast's Idempotency-Key, and an answer after partial work ----------------------

NUMBERS = [f"+1415555{i:04d}" for i in range(300, 450)]  # 150: two chunks


def test_a_broadcast_with_an_idempotency_key_is_queued_once(worker_host, store, twilio_api):
    key = str(uuid.uuid4())
    body = {"kind": "sms", "to": NUMBERS[:3], "body": "Open late"}

    first = start(worker_host, body, key)
    again = start(worker_host, body, key)
    other_body = start(worker_host, {**body, "body": "Closed"}, key)

    assert first.status == 202
    assert (again.status, again.json()) == (202, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other_body.status == 422
    assert len(drain(store, first.json()["id"])) == 1  # one chunk, not two


def test_a_keyed_broadcast_whose_request_died_is_carried_on_not_started_again(
    worker_host, store, twilio_api
):
    """The first attempt queued its recipients and died before answering: the key's row says
    `claimed`. A retry after the in-flight time carries on the same broadcast (same id, same
    tag secret), and every recipient is texted once although their chunk is queued twice."""
    key = str(uuid.uuid4())
    body = {"kind": "sms", "to": NUMBERS[:3], "body": "Open late"}
    first = start(worker_host, body, key).json()
    table = TableClient.from_connection_string(store.connection_string, idempotency.TABLE)
    row = table.get_entity("broadcasts", idempotency.row_key(key))
    stale = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    table.update_entity({"PartitionKey": "broadcasts", "RowKey": row["RowKey"],
                         "State": "claimed", "ClaimedAt": stale}, mode=UpdateMode.MERGE)

    retried = start(worker_host, body, key)

    assert retried.status == 202 and retried.json()["id"] == first["id"]
    chunks = drain(store, first["id"])
    assert len(chunks) == 2  # queued by both attempts
    for chunk in chunks:
        run(broadcast_send.main, queue_message(chunk))
    assert sorted(c.data["To"] for c in twilio_api.creates) == NUMBERS[:3]
    table.close()


THREE_CHUNKS = [f"+1415555{i:04d}" for i in range(500, 750)]  # 250: chunks of 100, 100, 50


def stall_after_the_first_put(monkeypatch) -> list[str]:
    """Storage takes the first queue message, then the second but loses its answer in a stall
    (the message is on the queue, the app hears nothing in time), and the third's turn never
    comes (one put at a time). The messages put are listed."""
    real_queue = storage.queue
    puts: list[str] = []

    class StallAfterFirst:
        def __init__(self, client):
            self.client = client

        async def send_message(self, content, **kwargs):
            puts.append(content)
            sent = await self.client.send_message(content, **kwargs)
            if len(puts) > 1:
                await asyncio.sleep(5)  # the answer stalls: queued, but nobody hears so
            return sent

    async def stalling_queue(name):
        return StallAfterFirst(await real_queue(name))

    monkeypatch.setattr(storage, "queue", stalling_queue)
    monkeypatch.setattr(broadcast_starting, "QUEUE_BUDGET", 1.0)
    monkeypatch.setattr(broadcast_queue, "ENQUEUE_CONCURRENCY", 1)
    return puts


def send_everything_queued(store, broadcast_id: str) -> None:
    for chunk in drain(store, broadcast_id):
        run(broadcast_send.main, queue_message(chunk))


def test_storage_stalling_part_way_never_marks_failed_what_may_be_sent(
    worker_host, store, twilio_api, monkeypatch
):
    """Without a key: a 202 that counts what was queued, what was not (recorded as failed) and
    what perhaps was (left as it is: it is sent), never a bare 503 that a client would retry."""
    stall_after_the_first_put(monkeypatch)

    response = start(worker_host, {"kind": "sms", "to": THREE_CHUNKS, "body": "Open late"})

    assert response.status == 202, response.body
    answer = response.json()
    assert (answer["accepted"], answer["not_queued"], answer["perhaps_queued"]) == (100, 50, 100)
    assert "Do not repeat" in answer["error"] and answer["id"]
    counts = get(worker_host, answer["status_url"]).json()["counts"]
    assert counts == {"queued": 200, "sent": 0, "failed": 50, "refused": 0}
    send_everything_queued(store, answer["id"])
    assert sorted(c.data["To"] for c in twilio_api.creates) == THREE_CHUNKS[:200]
    counts = get(worker_host, answer["status_url"]).json()["counts"]
    assert counts == {"queued": 0, "sent": 200, "failed": 50, "refused": 0}


def test_a_keyed_broadcast_that_storage_stalled_carries_on_and_texts_everyone_once(
    worker_host, store, twilio_api, monkeypatch
):
    """With a key: 503, and the key held; a retry in the in-flight time is told to wait, and
    the one after it carries on the same broadcast. Everyone is texted once, the ones whose
    queue message's answer was lost included (an attack run's: a 503 saying nothing was sent
    released the key, and the retry texted them again under a new broadcast)."""
    well = storage.queue
    puts = stall_after_the_first_put(monkeypatch)
    key = str(uuid.uuid4())
    body = {"kind": "sms", "to": THREE_CHUNKS, "body": "Open late"}

    first = start(worker_host, body, key)

    assert first.status == 503 and first.headers["Retry-After"] == "15"
    answer = first.json()
    assert "same Idempotency-Key" in answer["error"] and "nobody is texted" in answer["error"]
    assert start(worker_host, body, key).status == 409  # still in flight
    monkeypatch.setattr(storage, "queue", well)  # storage is well again
    assert len(puts) == 2
    table = TableClient.from_connection_string(store.connection_string, idempotency.TABLE)
    row = table.get_entity("broadcasts", idempotency.row_key(key))
    stale = datetime.datetime.now(datetime.UTC) - idempotency.IN_FLIGHT
    table.update_entity({"PartitionKey": "broadcasts", "RowKey": row["RowKey"],
                         "ClaimedAt": stale}, mode=UpdateMode.MERGE)
    table.close()

    retried = start(worker_host, body, key)

    assert retried.status == 202 and retried.json()["id"] == answer["id"]
    send_everything_queued(store, answer["id"])
    assert sorted(c.data["To"] for c in twilio_api.creates) == THREE_CHUNKS
    counts = get(worker_host, answer["status_url"]).json()["counts"]
    assert counts == {"queued": 0, "sent": 250, "failed": 0, "refused": 0}
    assert start(worker_host, body, key).status == 202  # replayed


# --- 3, 7, 8. bad list entries, all refused, one empty entry, a bad sender -------------------

def test_bad_list_entries_are_refused_once_each_and_stored_safely(worker_host, store, twilio_api):
    bad = ["bogus", "bogus", "a/b#c?d\\e", "tab\tand\x01control", "9" * 2000, "", "  "]

    response = start(worker_host, {"kind": "sms", "to": ["+14155550101", *bad], "body": "hi"})

    assert response.status == 202, response.body
    answer = response.json()
    assert answer["accepted"] == 1
    refused = [r["to"] for r in answer["refused"]]
    assert refused[:4] == ["bogus", "a/b#c?d\\e", "tab\tand\x01control", "9" * 100 + "…"]
    assert len(refused) == 6  # "bogus" once; the empty entries are refused, not the broadcast
    shown = get(worker_host, answer["status_url"]).json()
    assert shown["counts"]["refused"] == 6
    assert sorted(r["to"] for r in shown["recipients"]) == sorted(refused)


def test_ten_thousand_refused_numbers_are_answered_inside_the_deadline(
    worker_host, store, twilio_api
):
    numbers = [f"+1900{i:07d}" for i in range(10_000)]  # premium-rate: every one refused

    response = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"})

    assert response.status == 202, response.body[:300]
    assert response.elapsed < broadcast_starting.ACCEPT_DEADLINE
    assert (response.json()["accepted"], len(response.json()["refused"])) == (0, 10_000)
    status_url = response.json()["status_url"]
    assert get(worker_host, status_url + "?limit=1").json()["counts"]["refused"] == 10_000


def test_one_empty_entry_is_one_refused_entry(worker_host, store, twilio_api):
    numbers = [f"+1415555{i:04d}" for i in range(500, 550)] + [""]

    response = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"})

    assert response.status == 202, response.body
    assert response.json()["accepted"] == 50
    assert [r["to"] for r in response.json()["refused"]] == [""]


@pytest.mark.parametrize(("sender", "status"), [("nonsense", 400), ("+14155550999", 403)])
def test_a_bad_sender_is_one_refusal_of_the_broadcast(
    worker_host, store, twilio_api, sender, status
):
    response = start(
        worker_host, {"kind": "sms", "to": ["+14155550101", "+14155550102"], "body": "hi",
                      "from": sender})

    assert response.status == status
    assert "'from'" in response.json()["error"]


# --- 17. one rule for fields across make_call, send_sms and broadcasts -----------------------

@pytest.mark.parametrize(
    ("body", "field"),
    [({"kind": "call", "body": "hi"}, "body"), ({"kind": "sms", "message": "hi"}, "message"),
     ({"kind": "call", "media_url": "https://example.com/a.png"}, "media_url")],
    ids=["call-with-body", "sms-with-message", "call-with-media"],
)
def test_a_field_of_the_other_kind_is_refused_by_name(worker_host, store, twilio_api, body, field):
    response = start(worker_host, {**body, "to": ["+14155550101"]})

    assert response.status == 400
    assert f"Unknown field '{field}'" in response.json()["error"]


def test_an_sms_broadcast_takes_media_like_send_sms(worker_host, store, twilio_api):
    media = "https://example.com/menu.png"
    answer = start(worker_host, {"kind": "sms", "to": ["+14155550101"], "media_url": media})
    assert answer.status == 202, answer.body
    [chunk] = drain(store, answer.json()["id"])

    run(broadcast_send.main, queue_message(chunk))

    [create] = twilio_api.creates
    assert create.data["MediaUrl"] == [media] and "Body" not in create.data


# --- 4, 5, 6. crashes from input ----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/send_sms", "/api/broadcasts"])
def test_a_lone_surrogate_is_a_400_and_nothing_is_kept_sending(
    worker_host, store, twilio_api, path
):
    key = str(uuid.uuid4())
    body = '{"to": "+14155550101", "body": "hi \\ud800"}' if path == "/api/send_sms" else (
        '{"kind": "sms", "to": ["+14155550101"], "body": "hi \\ud800"}')

    first = post(worker_host, path, body, key)

    assert first.status == 400 and "surrogate" in first.json()["error"]
    assert twilio_api.requests == []


def callback(host: WorkerHost, path: str, params: dict[str, str]) -> HostResponse:
    request = signed_form_request(f"{PUBLIC}{path}", params)
    return host.request("POST", path, headers=dict(request.headers), body=request.get_body(),
                        base_url=PUBLIC)


def test_a_callback_with_a_huge_sequence_number_is_stored(worker_host, store):
    sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": sid, "AccountSid": ACCOUNT_SID, "CallStatus": "ringing",
              "SequenceNumber": "9" * 5000}

    assert callback(worker_host, "/api/call_status", params).status == 204
    assert get(worker_host, f"/api/calls/{sid}").json()["status"] == "ringing"


def test_an_oversized_callback_field_is_stored_cut_not_refused_forever(worker_host, store):
    sid = "SM" + uuid.uuid4().hex
    params = {"MessageSid": sid, "AccountSid": ACCOUNT_SID, "MessageStatus": "undelivered",
              "ErrorCode": "30003", "ErrorMessage": "x" * 40_000}

    assert callback(worker_host, "/api/message_status", params).status == 204
    [event] = get(worker_host, f"/api/messages/{sid}").json()["events"]
    assert len(event["ErrorMessage"]) == 4096


@pytest.mark.parametrize("broadcast_id", ["BC%2F..%2Fx", "BCnope", "BC" + "0" * 31])
def test_a_malformed_broadcast_id_is_400_not_503(worker_host, store, broadcast_id):
    response = get(worker_host, f"/api/broadcasts/{broadcast_id}")

    assert response.status == 400
    assert "not a broadcast id" in response.json()["error"]


def test_the_broadcast_page_gives_its_next_url(worker_host, store, twilio_api):
    answer = start(worker_host, {"kind": "sms", "to": NUMBERS[:3], "body": "hi"}).json()
    [chunk] = drain(store, answer["id"])
    run(broadcast_send.main, queue_message(chunk))

    first = get(worker_host, answer["status_url"] + "?limit=2").json()
    second = get(worker_host, first["next_url"])

    assert second.status == 200
    assert len(first["recipients"]) + len(second.json()["recipients"]) == 3


# --- 9. queue hygiene -------------------------------------------------------------------------

def _real_chunk(host, azurite) -> tuple[str, dict]:
    answer = start(host, {"kind": "sms", "to": ["+14155550161", "+14155550162"],
                          "body": "hi"}).json()
    [chunk] = drain(azurite, answer["id"])
    return answer["id"], chunk


@pytest.mark.parametrize("main", [broadcast_send.main, broadcast_poison.main],
                         ids=["send", "poison"])
def test_a_hand_made_message_is_logged_and_dropped_and_changes_nothing(
    worker_host, store, twilio_api, caplog, main
):
    caplog.set_level(logging.INFO)
    broadcast_id, chunk = _real_chunk(worker_host, store)
    unknown = "BC20260101000000" + "0" * 16
    forged = [
        b"not json at all", b"@@@not base64@@@", b"[1, 2]", b'{"recipients": "x"}',
        json.dumps({"broadcast": broadcast_id, "to": "+1415/../x", "tag": "0" * 32}).encode(),
        json.dumps({**chunk, "broadcast": unknown}).encode(),
        json.dumps({**chunk, "recipients": ["+14155550199", chunk["recipients"][1]]}).encode(),
        json.dumps({"broadcast": broadcast_id, "to": "+14155550199",
                    "tag": chunk["tags"][0]}).encode(),
        json.dumps({**chunk, "deferrals": "many"}).encode(),
        b'{"broadcast":"\\ud800","recipients":["\\ud800"],"tags":["x"]}',
        json.dumps({**chunk, "tags": ["\ud800" * 32, chunk["tags"][1]]}).encode(),
    ]

    for body in forged:
        run(main, queue_message(body, dequeue_count=5))  # raises nothing: nothing to retry

    assert twilio_api.requests == []
    shown = get(worker_host, f"/api/broadcasts/{broadcast_id}").json()
    assert shown["counts"] == {"queued": 2, "sent": 0, "failed": 0, "refused": 0}
    assert shown["recipients"] == []
    dropped = [r for r in caplog.records if "outcome=dropped" in r.getMessage()]
    assert len(dropped) == len(forged) and all(r.levelno == logging.ERROR for r in dropped)
    assert all(r.exc_info is None for r in caplog.records if r.name.startswith("shared"))
    # "[1, 2]" is JSON, so not "neither JSON nor base64", as it was called.
    assert sum("reason=not a JSON object, nor base64 of one" in r.getMessage()
               for r in dropped) == 3


def test_the_real_chunk_still_sends_after_forged_copies(worker_host, store, twilio_api):
    _, chunk = _real_chunk(worker_host, store)
    altered = {**chunk, "recipients": ["+14155550199", chunk["recipients"][1]]}

    run(broadcast_send.main, queue_message(altered))  # one forged recipient: none of it sent
    run(broadcast_send.main, queue_message(chunk))

    assert [c.data["To"] for c in twilio_api.creates] == chunk["recipients"]


# --- 10. keys belong to their caller ----------------------------------------------------------

def test_one_callers_key_never_replays_or_reveals_another_callers_answer(
    worker_host, store, twilio_api
):
    key = str(uuid.uuid4())
    body = {"to": TO, "body": "Table ready"}

    mine = post(worker_host, "/api/send_sms", body, key, {"x-functions-key": "key-of-a"})
    theirs = post(worker_host, "/api/send_sms", body, key, {"x-functions-key": "key-of-b"})
    probe = post(worker_host, "/api/send_sms", {**body, "body": "other"}, key,
                 {"x-functions-key": "key-of-c"})
    mine_again = post(worker_host, "/api/send_sms", body, key, {"x-functions-key": "key-of-a"})

    assert mine.status == theirs.status == probe.status == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["sid"] != mine.json()["sid"]
    assert mine_again.json() == mine.json() and mine_again.headers["Idempotent-Replayed"]


def test_two_idempotency_key_headers_are_a_400(worker_host, store, twilio_api):
    response = worker_host.request(
        "POST", "/api/send_sms", base_url=PUBLIC, body=json.dumps({"to": TO, "body": "hi"}),
        headers=[("Content-Type", "application/json"), ("Idempotency-Key", "a"),
                 ("Idempotency-Key", "b")],
    )

    assert response.status == 400 and "one Idempotency-Key" in response.json()["error"]
    assert twilio_api.requests == []


def test_the_key_row_is_the_digest_of_the_key_in_its_scope():
    assert idempotency.row_key("k") == hashlib.sha256(b"k").hexdigest()
    assert idempotency.row_key("k", "a") != idempotency.row_key("k", "b")


def test_expired_key_rows_are_deleted_and_live_ones_kept(worker_host, store, twilio_api,
                                                          monkeypatch):
    import idempotency_expiry

    live, old = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(3)]
    monkeypatch.setattr(idempotency, "TTL", datetime.timedelta(seconds=-1))
    for key in old:  # already past their 24 hours
        assert post(worker_host, "/api/send_sms", {"to": TO, "body": key}, key).status == 201
    monkeypatch.setattr(idempotency, "TTL", datetime.timedelta(hours=24))
    assert post(worker_host, "/api/send_sms", {"to": TO, "body": "live"}, live).status == 201

    run(idempotency_expiry.main, None)

    table = TableClient.from_connection_string(store.connection_string, idempotency.TABLE)
    rows = {r["RowKey"] for r in table.query_entities("PartitionKey eq 'send_sms'")}
    assert idempotency.row_key(live) in rows
    assert not rows & {idempotency.row_key(k) for k in old}
    table.close()


# --- from the attack run on the final code -------------------------------------------------------

def test_a_recipient_that_is_not_a_number_is_dropped_even_with_a_valid_tag(
    worker_host, store, twilio_api
):
    """Only whoever holds a broadcast's secret can tag a recipient; even then a `to` that is not
    E.164 (here with '/', which storage refuses in a row key) is refused before anything."""
    broadcast_id, _ = _real_chunk(worker_host, store)
    table = TableClient.from_connection_string(store.connection_string, broadcast_table.TABLE)
    row = table.get_entity(broadcast_id, model.BROADCAST_ROW)
    broadcast = model.Broadcast.from_row(dict(row))
    to = "+1415/5550182"

    for main in (broadcast_send.main, broadcast_poison.main):
        run(main, queue_message({"broadcast": broadcast_id, "to": to, "tag": broadcast.tag(to)}))

    assert twilio_api.requests == []
    assert get(worker_host, f"/api/broadcasts/{broadcast_id}").json()["recipients"] == []
    table.close()


@pytest.mark.parametrize(("dequeue_count", "retried"), [(1, True), (5, False)])
def test_the_poison_handler_stops_retrying_a_storage_failure(
    worker_host, store, twilio_api, monkeypatch, caplog, dequeue_count, retried
):
    """broadcast-sends-poison has no poison queue: after POISON_TRIES a storage failure is an
    ERROR and the message is dropped, not retried until it expires."""
    _, chunk = _real_chunk(worker_host, store)

    async def failing(task, reason):
        raise storage.StorageUnavailable("storage failed: HttpResponseError")

    monkeypatch.setattr(broadcast_table, "give_up", failing)
    message = queue_message(chunk, dequeue_count=dequeue_count)

    if retried:
        with pytest.raises(storage.StorageUnavailable):
            run(broadcast_poison.main, message)
    else:
        run(broadcast_poison.main, message)
        assert "outcome=abandoned" in caplog.text


def test_storage_refusing_a_write_drops_the_send_message_instead_of_retrying(
    worker_host, store, twilio_api, monkeypatch, caplog
):
    _, chunk = _real_chunk(worker_host, store)

    async def refused(*args, **kwargs):
        raise storage.StorageRefused("storage refused the request: InvalidInput")

    monkeypatch.setattr(broadcast_table, "write_rows", refused)

    run(broadcast_send.main, queue_message(chunk))  # raises nothing

    assert "outcome=dropped reason=storage refused" in caplog.text


def test_a_lost_conditional_write_reaches_its_caller_not_as_storage_unavailable():
    from azure.core.exceptions import HttpResponseError, ResourceModifiedError

    async def lost_race():
        raise ResourceModifiedError("The condition specified using HTTP conditional header(s) "
                                    "is not met.")

    async def bad_key():
        error = HttpResponseError("The 'RowKey' parameter is invalid.")
        error.status_code = 400
        raise error

    with pytest.raises(ResourceModifiedError):
        run_app(storage.bounded(lost_race()))
    with pytest.raises(storage.StorageRefused):
        run_app(storage.bounded(bad_key()))


@pytest.mark.parametrize("function", ["broadcast_send", "broadcast_poison"])
def test_a_surrogate_escape_in_a_queue_message_is_dropped_through_the_host(
    worker_host, store, twilio_api, function
):
    """The host hands a JSON message's top-level strings to the worker as trigger metadata: an
    unpaired surrogate there (valid JSON, ASCII on the wire) must not fail every delivery."""
    from devhost.worker_host import QueueMessageData

    body = b'{"broadcast":"\\ud800","recipients":["\\ud800"],"tags":["x"]}'

    result = worker_host.invoke_queue(function, QueueMessageData(id="surrogate", body=body))

    assert result.succeeded, result.error
    assert twilio_api.requests == []
