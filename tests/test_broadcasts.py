"""Broadcasts through the real worker, Azurite and the Twilio double: the accepting request
(refusals, duplicates, the queue) and the queue-triggered send (once per recipient, retried on
429, refusals recorded, poison recorded)."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import time
import uuid

import pytest
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient
from conftest import run_app

import broadcast_poison
import broadcast_send
from devhost.worker_host import HostResponse, WorkerHost
from shared.broadcasts import model, pace, sending
from shared.broadcasts import queue as broadcast_queue
from shared.broadcasts import starting as broadcast_starting
from shared.broadcasts import table as broadcast_table

PUBLIC = "https://myapp.azurewebsites.net"


@pytest.fixture
def storage(texting_storage):
    return texting_storage


def start(host: WorkerHost, body: dict) -> HostResponse:
    return host.request(
        "POST",
        "/api/broadcasts",
        headers={"Content-Type": "application/json"},
        body=json.dumps(body),
        base_url=PUBLIC,
    )


def status(host: WorkerHost, broadcast_id: str, query: str = "") -> dict:
    response = host.request("GET", f"/api/broadcasts/{broadcast_id}{query}", base_url=PUBLIC)
    assert response.status == 200, response.body
    return response.json()


def drain(azurite, broadcast_id: str, *others: str) -> list[dict]:
    """Take these broadcasts' messages off the queue (chunks and single recipients), as the host
    would before handing them over. Drain every broadcast of a test in one call: a message
    received and left (another broadcast's) stays invisible for 30 s."""
    wanted = {broadcast_id, *others}
    queue = QueueClient.from_connection_string(azurite.connection_string, broadcast_queue.QUEUE)
    found = []
    for message in queue.receive_messages(messages_per_page=32, visibility_timeout=30):
        try:
            body = json.loads(message.content)
        except ValueError:
            continue  # another test's message
        if isinstance(body, dict) and body.get("broadcast") in wanted:
            found.append(body)
            queue.delete_message(message)
    return found


def take(azurite, broadcast_id: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
    """`drain` until `count` messages came (a deferred one becomes visible after its wait)."""
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        assert time.monotonic() < deadline, f"only {len(found)} of {count} messages came"
        found += drain(azurite, broadcast_id)
        time.sleep(0.2)
    return found


def queue_message(body: dict, dequeue_count: int = 1) -> QueueMessage:
    """The QueueMessage the worker builds for a queue trigger (azure.functions.queue's)."""
    return QueueMessage(
        id=f"msg-{body.get('to') or len(body['recipients'])}",
        body=json.dumps(body).encode(),
        dequeue_count=dequeue_count,
        insertion_time=datetime.datetime.now(datetime.UTC),
    )


def run(main, message: QueueMessage) -> None:
    run_app(main(message))


def single(chunk: dict, to: str) -> dict:
    """One recipient's own message, as broadcast_send defers it."""
    tag = chunk["tags"][chunk["recipients"].index(to)]
    return {"broadcast": chunk["broadcast"], "to": to, "tag": tag}


def tasks_of(chunk: dict) -> list[model.Task]:
    """The chunk's recipients as broadcast_send takes them up: vouched for by the broadcast."""
    envelope = model.read_message(json.dumps(chunk).encode())
    broadcast, verified = run_app(broadcast_table.open_message(envelope, "test", "msg"))
    assert broadcast is not None
    return [broadcast.task(to) for to in verified]


def test_a_broadcast_checks_every_number_and_queues_the_accepted_once(
    worker_host, storage, twilio_api
):
    numbers = ["+14155550101", "+14155550102", "+14155550101", "+19005550100", "nonsense"]

    response = start(worker_host, {"kind": "sms", "to": numbers, "body": "We open late today"})

    assert response.status == 202, response.body
    answer = response.json()
    assert answer["accepted"] == 2
    assert [r["to"] for r in answer["refused"]] == ["+19005550100", "nonsense"]
    assert "premium-rate" in answer["refused"][0]["error"]
    assert answer["status_url"] == f"/api/broadcasts/{answer['id']}"
    assert twilio_api.requests == []  # nothing is sent by the accepting request
    [chunk] = drain(storage, answer["id"])
    assert chunk["recipients"] == ["+14155550101", "+14155550102"]
    shown = status(worker_host, answer["id"])
    assert shown["counts"] == {"queued": 2, "sent": 0, "failed": 0, "refused": 2}


def test_a_bad_text_or_kind_refuses_the_whole_broadcast(worker_host, storage, twilio_api):
    assert start(worker_host, {"kind": "fax", "to": ["+14155550101"]}).status == 400
    assert start(worker_host, {"kind": "sms", "to": ["+14155550101"]}).status == 400  # no body
    assert start(worker_host, {"kind": "sms", "to": [], "body": "x"}).status == 400
    too_many = [f"+1415555{i:04d}" for i in range(10_001)]
    assert start(worker_host, {"kind": "sms", "to": too_many, "body": "x"}).status == 400


def test_a_chunk_delivered_twice_sends_each_recipient_once(worker_host, storage, twilio_api):
    numbers = ["+14155550121", "+14155550122", "+14155550123"]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])

    run(broadcast_send.main, queue_message(chunk))
    run(broadcast_send.main, queue_message(chunk, dequeue_count=2))  # the queue delivered again

    assert sorted(c.data["To"] for c in twilio_api.creates) == numbers
    shown = status(worker_host, answer["id"])
    assert shown["counts"] == {"queued": 0, "sent": 3, "failed": 0, "refused": 0}
    assert all(r["state"] == "sent" and r["sid"].startswith("SM") for r in shown["recipients"])
    assert drain(storage, answer["id"]) == []  # nothing deferred, nothing put back


def test_a_chunk_that_comes_back_after_its_keys_expired_sends_nobody_again(
    worker_host, storage, twilio_api, monkeypatch
):
    """A key lasts a day; a queue message up to a week, and an operator may put a poison
    message back later still. The chunk's rows say who was sent (found by an attack run)."""
    from shared.records import idempotency

    numbers = ["+14155550131", "+14155550132", "+14155550133"]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    run(broadcast_send.main, queue_message(chunk))
    later = datetime.datetime.now(datetime.UTC) + idempotency.TTL + datetime.timedelta(hours=1)
    with monkeypatch.context() as a_day_later:
        a_day_later.setattr(idempotency, "_now", lambda: later)
        assert run_app(idempotency.delete_expired()) >= 3  # the app's own sweep: keys gone

        run(broadcast_send.main, queue_message(chunk, dequeue_count=1))  # put back by hand

    assert sorted(c.data["To"] for c in twilio_api.creates) == numbers  # once each
    shown = status(worker_host, answer["id"])
    assert shown["counts"] == {"queued": 0, "sent": 3, "failed": 0, "refused": 0}


def test_a_rate_limit_defers_that_recipient_alone_and_its_message_sends_later(
    worker_host, storage, twilio_api, monkeypatch
):
    monkeypatch.setattr(sending, "JITTER", 0.0)
    numbers = ["+14155550104", "+14155550105"]
    answer = start(worker_host, {"kind": "call", "to": numbers, "message": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    twilio_api.error(429, 20429, "Too Many Requests")

    run(broadcast_send.main, queue_message(chunk))  # the first is deferred, the second sent
    assert drain(storage, answer["id"]) == []  # not visible yet: Twilio's Retry-After, 1 s
    [later] = take(storage, answer["id"])
    assert later == {**single(chunk, numbers[0]), "deferrals": 1}
    run(broadcast_send.main, queue_message(later))

    assert [c.data["To"] for c in twilio_api.creates] == [numbers[0], numbers[1], numbers[0]]
    assert status(worker_host, answer["id"])["counts"]["sent"] == 2


def test_deferrals_are_bounded_then_the_queue_retries(worker_host, storage, twilio_api):
    answer = start(worker_host, {"kind": "sms", "to": ["+14155550109"], "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    twilio_api.error(429, 20429, "Too Many Requests")

    worn_out = {**single(chunk, "+14155550109"), "deferrals": sending.MAX_DEFERRALS}
    with pytest.raises(sending.TryAgain):  # the queue's own retry, then poison
        run(broadcast_send.main, queue_message(worn_out))


def test_a_refusal_by_twilio_is_recorded_as_failed(worker_host, storage, twilio_api):
    answer = start(worker_host, {"kind": "sms", "to": ["+14155550105"], "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    twilio_api.error(400, 21614, "'To' number is not a valid mobile number")

    run(broadcast_send.main, queue_message(chunk))

    [recipient] = status(worker_host, answer["id"])["recipients"]
    assert recipient["state"] == "failed"
    assert recipient["error"].startswith("21614: ")


def test_an_unknown_outcome_is_looked_up_on_the_next_try(
    worker_host, storage, twilio_api, app_settings, monkeypatch
):
    from shared.records import idempotency

    answer = start(worker_host, {"kind": "sms", "to": ["+14155550106"], "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    twilio_api.delay_after_create = 0.5
    wait = sending.UNKNOWN_OUTCOME_WAIT
    assert wait > idempotency.IN_FLIGHT.total_seconds()  # by then the key may be looked up
    monkeypatch.setattr(sending, "UNKNOWN_OUTCOME_WAIT", 0.0)  # the test's clock
    monkeypatch.setattr(sending, "JITTER", 0.0)

    run(broadcast_send.main, queue_message(chunk))  # timed out: deferred until it can be asked
    twilio_api.delay_after_create = 0
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))
    [later] = take(storage, answer["id"])
    assert later["deferrals"] == 1
    run(broadcast_send.main, queue_message(later))

    assert len(twilio_api.creates) == 1
    [recipient] = status(worker_host, answer["id"])["recipients"]
    assert (recipient["state"], recipient["sid"]) == ("sent", twilio_api.created[0]["sid"])


def test_a_poisoned_chunk_is_recorded_as_failed_unless_it_was_sent(
    worker_host, storage, twilio_api
):
    numbers = ["+14155550107", "+14155550108"]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    run(broadcast_send.main, queue_message(single(chunk, numbers[0])))  # sent on its own

    run(broadcast_poison.main, queue_message(chunk, dequeue_count=5))

    shown = status(worker_host, answer["id"])
    states = {r["to"]: r["state"] for r in shown["recipients"]}
    assert states == {numbers[0]: "sent", numbers[1]: "failed"}
    assert shown["counts"]["queued"] == 0
    run(broadcast_poison.main, queue_message(single(chunk, numbers[0]), dequeue_count=5))
    assert status(worker_host, answer["id"])["counts"]["sent"] == 1  # a sent one stays sent


def test_a_poisoned_recipient_that_twilio_has_is_recorded_sent_not_failed(
    worker_host, storage, twilio_api, app_settings
):
    """Its tries failed after Twilio made the text (here: the answer lost, then the tries
    used up): the poison handler asks Twilio's list as a retry would, and records it sent,
    with its SID and its record, rather than failed (an operator re-sending the failed ones
    would have texted it twice)."""
    numbers = ["+14155550109", "+14155550110"]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    twilio_api.delay_after_create = 0.5  # Twilio makes the first text; the app never hears
    run(broadcast_send.main, queue_message(single(chunk, numbers[0])))
    twilio_api.delay_after_create = 0
    drain(storage, answer["id"])  # its deferred copy: never delivered (the tries ran out)

    run(broadcast_poison.main, queue_message(chunk, dequeue_count=5))

    [made] = twilio_api.created
    shown = status(worker_host, answer["id"])
    states = {r["to"]: (r["state"], r["sid"]) for r in shown["recipients"]}
    assert states == {numbers[0]: ("sent", made["sid"]), numbers[1]: ("failed", None)}
    record = worker_host.request("GET", f"/api/messages/{made['sid']}", base_url=PUBLIC)
    assert record.status == 200
    assert len(twilio_api.creates) == 1


def test_a_poisoned_recipient_twilio_could_not_be_asked_about_is_failed_as_unknown(
    worker_host, storage, twilio_api, app_settings
):
    """Its create went out and Twilio's list could not be read: not the plain failure an
    operator would send again, but one that says to look it up first."""
    from shared.broadcasts import sending as broadcast_sending

    numbers = ["+14155550111", "+14155550112"]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    twilio_api.delay_after_create = 0.5
    run(broadcast_send.main, queue_message(single(chunk, numbers[0])))
    twilio_api.delay_after_create = 0
    drain(storage, answer["id"])
    twilio_api.fail_lists(500, 20500, "Internal Server Error", times=5)

    run(broadcast_poison.main, queue_message(chunk, dequeue_count=5))

    errors = {r["to"]: (r["state"], r["error"]) for r in status(worker_host, answer["id"])
              ["recipients"]}
    assert errors[numbers[0]] == ("failed", broadcast_sending.UNKNOWN_OUTCOME)
    assert errors[numbers[1]] == ("failed", "its queue message failed every try")


@pytest.mark.parametrize(("field", "value", "named"), [
    ("Seal", "zz", "its Seal is not 64 hex digits"),
    ("MediaUrls", "[not json", "its MediaUrls is not a JSON list of links"),
    ("MediaUrls", '[{"a": 1}]', "its MediaUrls is not a JSON list of links"),
], ids=["seal", "media-not-json", "media-not-links"])
def test_a_broadcast_row_edited_by_hand_is_named_and_its_messages_never_loop(
    worker_host, storage, twilio_api, caplog, field, value, named
):
    """Its messages, and then the poison handler, failed on every delivery for as long as the
    queue kept them (an attack run's). Now each is dropped with one ERROR line, nothing is
    sent on what the row says, and GET still answers."""
    from azure.data.tables import TableClient, UpdateMode

    numbers = ["+14155550141", "+14155550142"]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    with TableClient.from_connection_string(storage.connection_string,
                                            broadcast_table.TABLE) as rows:
        rows.update_entity({"PartitionKey": answer["id"], "RowKey": model.BROADCAST_ROW,
                            field: value}, mode=UpdateMode.MERGE)

    run(broadcast_send.main, queue_message(chunk))
    run(broadcast_poison.main, queue_message(chunk, dequeue_count=5))

    assert twilio_api.creates == []
    dropped = [r.getMessage() for r in caplog.records if "outcome=dropped" in r.getMessage()]
    assert len(dropped) == 2 and all(named in line for line in dropped), dropped
    assert status(worker_host, answer["id"])["counts"]["queued"] == 2


def test_a_chunk_out_of_time_puts_the_rest_back(
    worker_host, storage, twilio_api, app_settings, monkeypatch, leases
):
    app_settings.setenv("BROADCAST_SENDS_PER_SECOND", "0.4")  # one slot every 2.5 s
    monkeypatch.setattr(sending, "CHUNK_BUDGET", 1.0)
    numbers = ["+14155550131", "+14155550132", "+14155550133"]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])

    run(broadcast_send.main, queue_message(chunk))

    assert [c.data["To"] for c in twilio_api.creates] == numbers[:1]
    [rest] = drain(storage, answer["id"])
    assert rest == {**chunk, "recipients": numbers[1:], "tags": chunk["tags"][1:]}
    shown = status(worker_host, answer["id"])
    assert shown["counts"] == {"queued": 2, "sent": 1, "failed": 0, "refused": 0}
    assert [r["state"] for r in shown["recipients"]] == ["sent"]  # queued ones are counted


def test_status_pages_through_recipients_and_follows_their_callbacks(
    worker_host, storage, twilio_api
):
    numbers = [f"+1415555{i:04d}" for i in range(110, 115)]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    run(broadcast_send.main, queue_message(chunk))  # recipients are listed as they settle

    first = status(worker_host, answer["id"], "?limit=2")
    second = status(
        worker_host, answer["id"], f"?limit=2&continuation={first['next']}"
    )

    assert [r["to"] for r in first["recipients"]] == numbers[:2]
    assert [r["to"] for r in second["recipients"]] == numbers[2:4]
    assert first["counts"]["sent"] == 5 and second["counts"] is None  # counted once
    assert first["recipients"][0]["delivery"] == "queued"  # the record, moved on by callbacks
    unknown = "BC20260101000000" + "0" * 16
    assert worker_host.request("GET", f"/api/broadcasts/{unknown}", base_url=PUBLIC).status == 404


def test_ten_thousand_recipients_are_accepted_inside_the_deadline_as_chunks(
    worker_host, storage, twilio_api
):
    """The largest broadcast: a hundred chunk messages and one header row, not 10,000 queue
    puts (Azurite takes about 700 a second here; see BENCHMARKS.md for the accept time)."""
    numbers = [f"+1415{i:07d}" for i in range(2_000_000, 2_010_000)]

    response = start(worker_host, {"kind": "sms", "to": numbers, "body": "Store opens late"})

    assert response.status == 202, response.body[:300]
    answer = response.json()
    assert answer["accepted"] + len(answer["refused"]) == 10_000
    assert response.elapsed < broadcast_starting.ACCEPT_DEADLINE
    queue = QueueClient.from_connection_string(storage.connection_string, broadcast_queue.QUEUE)
    assert queue.get_queue_properties().approximate_message_count <= 100 + 10  # + other tests'
    counts = status(worker_host, answer["id"], "?limit=1")["counts"]
    assert counts == {
        "queued": answer["accepted"], "sent": 0, "failed": 0, "refused": len(answer["refused"])
    }
    queue.clear_messages()  # leave no 10,000 recipients for a later test's poller


def test_a_keyed_broadcast_whose_answer_lists_ten_thousand_refusals_replays_it(
    worker_host, storage, twilio_api
):
    """Its answer (about 1 MB) did not fit a storage property: the key was never kept, so a
    retry got 409s and then ran again instead of the first answer (an attack run's)."""
    premium = [f"+1900{i:07d}" for i in range(5_550_000, 5_560_000)]
    key = f"big-{uuid.uuid4().hex}"

    def post() -> HostResponse:
        return worker_host.request(
            "POST", "/api/broadcasts", base_url=PUBLIC,
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
            body=json.dumps({"kind": "sms", "to": premium, "body": "Hi"}))

    first, again = post(), post()

    assert first.status == 202 and len(first.json()["refused"]) == 10_000
    assert len(first.body) > 500_000
    assert again.status == 202 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.body == first.body


def test_a_broadcast_runs_end_to_end_through_the_hosts_queue_trigger(
    worker_host, storage, twilio_api
):
    """The local host's queue listener (devhost.queues, host.json's limits) hands the chunk, and
    then the deferred recipient, to broadcast_send: a chunk the queue delivers twice, a refused
    number, a duplicate and a 429 on the way, and every recipient ends sent exactly once."""
    queue = QueueClient.from_connection_string(storage.connection_string, broadcast_queue.QUEUE)
    queue.clear_messages()
    numbers = [f"+1415555{i:04d}" for i in range(130, 140)]
    twilio_api.error(429, 20429, "Too Many Requests")  # the first create: deferred, then sent
    answer = start(
        worker_host,
        {"kind": "sms", "to": [*numbers, numbers[0], "+19005550100"], "body": "Open late"},
    ).json()
    assert (answer["accepted"], len(answer["refused"])) == (10, 1)
    [chunk] = queue.peek_messages(max_messages=32)
    queue.send_message(chunk.content)  # the same chunk, delivered twice

    poller = worker_host.start_queues()
    try:
        deadline = time.monotonic() + 30
        while (shown := status(worker_host, answer["id"]))["counts"]["queued"]:
            assert time.monotonic() < deadline, shown["counts"]
            time.sleep(0.3)
        while queue.get_queue_properties().approximate_message_count or poller.in_flight:
            assert time.monotonic() < deadline, "the duplicate chunk never ran"
            time.sleep(0.3)
    finally:
        poller.stop()

    assert shown["counts"] == {"queued": 0, "sent": 10, "failed": 0, "refused": 1}
    sent = [c.data["To"] for c in twilio_api.creates]
    assert len(sent) == 11 and sorted(set(sent)) == numbers  # 10 sends, one of them after a 429
    assert all(r["state"] == "sent" and r["sid"] for r in shown["recipients"] if r["to"] in numbers)
    assert {o.action for o in poller.outcomes} == {"deleted"}  # deferred is settled, not failed
    assert len(twilio_api.creates) == 11  # the duplicate chunk sent nothing more


def test_the_pace_spaces_sends_and_says_when_the_next_slot_is_free(monkeypatch):
    """Slots 1/rate apart; `free_in` (what `admit` holds against its wait) is when the next
    untaken one comes, and moves on with the clock."""
    now = [100.0]
    monkeypatch.setattr(pace.time, "monotonic", lambda: now[0])
    pacer = pace.Pacer(rate=10)

    waits = [pacer.reserve() for _ in range(21)]

    assert waits[:3] == [0.0, pytest.approx(0.1), pytest.approx(0.2)]
    assert waits[20] == pytest.approx(2.0)
    assert pacer.free_in() == pytest.approx(2.1)  # beyond MAX_PACING_WAIT: admit defers
    now[0] += 1.0
    assert pacer.free_in() == pytest.approx(1.1)
    assert pacer.reserve() == pytest.approx(1.1)
    assert pace.Pacer(rate=0).reserve() is None


def test_a_chunk_costs_under_two_storage_operations_a_recipient(
    worker_host, storage, twilio_api, monkeypatch, tmp_path
):
    """Issue 26's budget: a chunk claims its keys a group at a time and writes its rows and
    index rows a transaction each, so its own operations stay well under the three a recipient
    allowed (one of them each recipient's record); one at a time they were five."""
    from devhost.storage_ops import OperationCounter
    from shared.records import storage as app_storage

    numbers = [f"+1415555{i:04d}" for i in range(300, 340)]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "Open late"}).json()
    [chunk] = drain(storage, answer["id"])
    counter = OperationCounter(tmp_path / "ops.json")
    monkeypatch.setitem(app_storage._TRANSPORT, "raw_request_hook", counter.hook("app"))

    run(broadcast_send.main, queue_message(chunk))  # a new loop: clients built with the hook

    assert len(twilio_api.creates) == len(numbers)
    counts = dict(counter.counts)
    assert counts["app table write TwilioRecords"] == len(numbers)  # the records, one each
    assert counts["app table batch"] >= 2 + len(numbers) // sending.Claiming.GROUP
    assert "app table write TwilioIdempotencyKeys" not in counts  # no key claimed alone
    assert sum(counts.values()) < 2 * len(numbers), counts


def test_a_broadcast_is_accepted_after_storage_lost_its_tables(worker_host, storage, twilio_api):
    """Azurite restarted (its data in memory) or a table deleted on Azure: the app's clients
    still take the tables for created. A transaction's TableNotFound (TableTransactionError,
    not the SDK's ResourceNotFoundError) once became a 503 until the process restarted; it
    now creates the table again, as a single operation's does."""
    # A refused number: its row is the first write, a transaction.
    body = {"kind": "sms", "to": ["+14155550171", "+14155550172", "+19005550100"], "body": "hi"}
    assert start(worker_host, body).status == 202
    storage.stop()
    storage.start()

    again = start(worker_host, body)

    assert again.status == 202, again.body
    assert status(worker_host, again.json()["id"])["counts"]["queued"] == 2


def test_admitting_a_send_takes_no_slot(app_settings, leases):
    """`admit` only asks whether a slot is free within the wait: the slot is taken after the
    claim (`take_slot`), so sends admitted together do not use up the pace twice."""
    app_settings.setenv("BROADCAST_SENDS_PER_SECOND", "10")

    async def admitted_three_then_sent_one() -> tuple[float | None, float | None]:
        for _ in range(3):
            await pace.admit()
        share = pace._shares[10.0]
        before = share.pacer.free_in()
        await pace.take_slot()
        return before, share.pacer.free_in()

    before, after = run_app(admitted_three_then_sent_one())

    assert before == 0.0
    assert after == pytest.approx(1 / (10 * pace.HEADROOM), abs=0.02)
    assert pace.Pacer(rate=0).free_in() is None


def test_creates_leave_at_their_slots_however_long_the_claims_took(
    worker_host, storage, twilio_api, app_settings, monkeypatch, leases
):
    """Two chunks at once, one whose claim is slow: the creates still reach Twilio 1/rate
    apart. (With the slot taken before the claim, the slow chunk's create left on the heels
    of the other's, and a one-second limit refused it.)"""
    from shared.outbound import sms
    from shared.records import idempotency

    app_settings.setenv("BROADCAST_SENDS_PER_SECOND", "10")
    left: list[float] = []
    real_send, real_claim_many = sms.send, idempotency.claim_many

    async def timed(*args, **kwargs):
        left.append(time.monotonic())
        return await real_send(*args, **kwargs)

    async def slow_for_the_first(function, wanted):
        if wanted and wanted[0].to == slow[0]:
            await asyncio.sleep(0.35)
        return await real_claim_many(function, wanted)

    monkeypatch.setattr(sms, "send", timed)
    monkeypatch.setattr(idempotency, "claim_many", slow_for_the_first)
    slow = [f"+1415555{i:04d}" for i in range(350, 353)]
    fast = [f"+1415555{i:04d}" for i in range(360, 364)]
    first = start(worker_host, {"kind": "sms", "to": slow, "body": "hi"}).json()
    second = start(worker_host, {"kind": "sms", "to": fast, "body": "hi"}).json()
    chunks = drain(storage, first["id"], second["id"])

    async def both() -> None:
        await asyncio.gather(*(broadcast_send.main(queue_message(c)) for c in chunks))

    run_app(both())

    assert len(left) == len(slow) + len(fast)
    gaps = [b - a for a, b in itertools.pairwise(sorted(left))]
    assert min(gaps) >= 0.9 / (10 * pace.HEADROOM), gaps


def test_a_send_over_the_pace_is_deferred_and_nothing_reaches_twilio(
    worker_host, storage, twilio_api, app_settings, leases
):
    app_settings.setenv("BROADCAST_SENDS_PER_SECOND", "0.4")  # one slot every 2.5 s
    numbers = ["+14155550141", "+14155550142"]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    first, second = tasks_of(chunk)

    assert run_app(sending.deliver(first)) == "sent"
    with pytest.raises(pace.Paced) as paced:
        run_app(sending.deliver(second))

    assert paced.value.after >= sending.MAX_PACING_WAIT
    assert [c.data["To"] for c in twilio_api.creates] == [first.to]
    # Nothing was claimed: the deferred copy is a fresh send, not an in-flight 409.
    pace._shares.clear()
    assert run_app(sending.deliver(second.deferred())) == "sent"


def test_a_share_that_fell_to_nothing_after_the_claim_sends_nothing_and_gives_the_key_back(
    worker_host, storage, twilio_api, app_settings, leases, monkeypatch
):
    """Admitted, claimed, then a renewal left this instance no share (the others use the whole
    rate): nothing goes to Twilio, and the key is given back, so the deferred copy sends at
    once instead of waiting as an unknown outcome."""
    app_settings.setenv("BROADCAST_SENDS_PER_SECOND", "10")
    [task] = tasks_of(drain(storage, start(worker_host, {
        "kind": "sms", "to": ["+14155550145"], "body": "hi"}).json()["id"])[0])
    real_admit = pace.admit

    async def admitted_then_share_lost(max_wait: float = pace.MAX_PACING_WAIT) -> None:
        await real_admit(max_wait)
        share = pace._shares[10.0]
        share.pacer.rate, share.renew_at = 0.0, time.monotonic() + 60

    monkeypatch.setattr(pace, "admit", admitted_then_share_lost)
    with pytest.raises(pace.Paced):
        run_app(sending.deliver(task))

    assert twilio_api.creates == []
    monkeypatch.setattr(pace, "admit", real_admit)
    pace._shares.clear()
    assert run_app(sending.deliver(task.deferred())) == "sent"  # not a 409: key free


@pytest.mark.parametrize("value", ["0", "-1", "fast", "nan", "inf", "1001"])
def test_a_malformed_pace_is_named(value):
    from shared.broadcasts.settings import load_broadcast_settings
    from shared.common.settings import SettingsError

    with pytest.raises(SettingsError, match="BROADCAST_SENDS_PER_SECOND"):
        load_broadcast_settings({"BROADCAST_SENDS_PER_SECOND": value})


def test_a_malformed_pace_is_named_before_a_broadcast_is_accepted(
    worker_host, storage, twilio_api, app_settings
):
    """broadcast_send read it only as it sent: the broadcast was accepted (202), then every
    recipient failed, the setting named only in the queue function's log (an attack run's)."""
    app_settings.setenv("BROADCAST_SENDS_PER_SECOND", "fast")
    app_settings.setenv("SMS_ALLOWED_COUNTRIES", "US,Narnia")

    response = start(worker_host, {"kind": "sms", "to": ["+14155550201"], "body": "Hi"})

    assert response.status == 500
    assert response.json()["settings"] == ["SMS_ALLOWED_COUNTRIES", "BROADCAST_SENDS_PER_SECOND"]
    assert "id" not in response.json() and twilio_api.requests == []


def test_a_read_while_storage_is_down_does_not_speak_of_queueing(worker_host, storage):
    """GET answered "Storage is unavailable, so nothing was queued", about a read (an attack
    run's)."""
    storage.stop()
    try:
        answers = [worker_host.request("GET", path, base_url=PUBLIC)
                   for path in ("/api/broadcasts", "/api/broadcasts/BC" + "1" * 30)]
    finally:
        storage.start()

    for answer in answers:
        assert answer.status == 503 and answer.headers["Retry-After"]
        assert answer.json()["error"] == "Storage is unavailable: try again shortly."


def test_the_largest_chunk_fits_a_queue_message():
    """100 of the longest numbers E.164 allows, each with its tag: one queue message (the text
    is on the broadcast's row, not in the message)."""
    broadcast = model.Broadcast.new("BC" + "0" * 30, "sms", "x" * 1600, "+14155550100")
    numbers = [f"+{i:015d}"[:16] for i in range(model.CHUNK_SIZE)]
    [chunk] = model.chunks(broadcast, numbers)

    assert len(chunk.to_json().encode()) <= model.MAX_MESSAGE_BYTES


def test_the_broadcasts_are_listed_newest_first_with_their_counts(worker_host, storage, twilio_api):
    first = start(worker_host, {"kind": "sms", "to": ["+14155550131"], "body": "one"}).json()
    second = start(worker_host, {"kind": "call", "to": ["+14155550132", "+19005550100"],
                                 "message": "two"}).json()

    listed = worker_host.request("GET", "/api/broadcasts?limit=50", base_url=PUBLIC).json()
    paged = worker_host.request("GET", "/api/broadcasts?limit=1", base_url=PUBLIC).json()
    ids = [b["id"] for b in listed["broadcasts"]]

    assert ids.index(second["id"]) < ids.index(first["id"])
    shown = next(b for b in listed["broadcasts"] if b["id"] == second["id"])
    assert shown["kind"] == "call" and shown["accepted"] == 1
    assert shown["counts"] == {"queued": 1, "sent": 0, "failed": 0, "refused": 1}
    assert len(paged["broadcasts"]) == 1 and paged["next_url"].startswith("/api/broadcasts?")
    assert len(drain(storage, first["id"], second["id"])) == 2


def test_the_counts_follow_each_recipients_final_status_callback(worker_host, storage, twilio_api):
    """Twilio's status callbacks for a broadcast's texts come to the URL each create named; the
    final ones (delivered, undelivered) are counted, a retried one once, others not at all."""
    from urllib.parse import urlencode

    from conftest import ACCOUNT_SID, signature

    numbers = ["+14155550141", "+14155550142", "+14155550143"]
    answer = start(worker_host, {"kind": "sms", "to": numbers, "body": "hi"}).json()
    [chunk] = drain(storage, answer["id"])
    run(broadcast_send.main, queue_message(chunk))
    creates = {str(r.data["To"]): r.data for r in twilio_api.creates}

    def report(to: str, status: str) -> int:
        url = str(creates[to]["StatusCallback"]).split("#")[0]  # the fragment is Twilio's
        params = {"MessageSid": "SM" + "0" * 31 + to[-1], "AccountSid": ACCOUNT_SID,
                  "MessageStatus": status, "To": to, "From": "+14155550100"}
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": signature(url, params)}
        return worker_host.request("POST", url, headers=headers, body=urlencode(params),
                                   base_url=PUBLIC).status

    assert all(f"broadcast={answer['id']}" in str(c["StatusCallback"]) for c in creates.values())
    statuses = [report(numbers[0], "sent"), report(numbers[0], "delivered"),
                report(numbers[0], "delivered"), report(numbers[1], "undelivered")]
    shown = status(worker_host, answer["id"])
    listed = worker_host.request("GET", "/api/broadcasts?limit=50", base_url=PUBLIC).json()

    assert statuses == [204, 204, 204, 204]
    assert shown["counts"] == {"queued": 0, "sent": 3, "failed": 0, "refused": 0}
    assert shown["delivery"] == {"delivered": 1, "undelivered": 1}
    mine = next(b for b in listed["broadcasts"] if b["id"] == answer["id"])
    assert mine["delivery"] == {"delivered": 1, "undelivered": 1}

    # A final callback naming a number the broadcast never had made it a recipient, listed as
    # queued (an attack run's): it is recorded as a text's callback, and the broadcast is as it
    # was.
    creates["+14155550999"] = creates[numbers[2]]
    assert report("+14155550999", "delivered") == 204
    again = status(worker_host, answer["id"])
    assert "+14155550999" not in [r["to"] for r in again["recipients"]]
    assert again["counts"] == shown["counts"] and again["delivery"] == shown["delivery"]
