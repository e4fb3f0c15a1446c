"""An Idempotency-Key's row that vanishes while a request takes the key over (the expiry sweep
deleted it, or another retry released it): the request answers 409 with Retry-After (a webhook
503), never a 500 with a traceback, and the retry claims the key afresh."""

from __future__ import annotations

import contextlib
import datetime
import json
import uuid

import pytest

from shared.records import idempotency

PUBLIC = "https://myapp.azurewebsites.net"
TO = "+14155550123"


def _no_escape(response) -> None:
    assert response.status != 500 and response.error is None, (
        f"{response.status} from {response.function}: escaped\n{response.error}")


def _in_flight(response) -> None:
    """make_call, send_sms, broadcasts: 409, Retry-After, and JSON naming the key in flight."""
    _no_escape(response)
    assert response.status == 409, response.body
    assert int(response.headers["Retry-After"]) >= 1
    assert "Idempotency-Key" in json.loads(response.body)["error"]



ENDPOINTS = [
    ("make_call", {"to": TO, "message": "Your table is ready"}),
    ("send_sms", {"to": TO, "body": "Your table is ready"}),
    ("broadcasts", {"kind": "sms", "to": [TO], "body": "Your table is ready"}),
]


@contextlib.contextmanager
def deleted_before_its_update(monkeypatch, texting_storage, partition: str, row: str):
    """The key's row is deleted (by the expiry sweep, or another retry's release) just before the
    request's third operation on the keys' table: after its insert (409) and its read (and any
    lookup at Twilio), the conditional update of its take-over."""
    from azure.data.tables import TableClient

    from shared.records import storage as app_storage

    table = TableClient.from_connection_string(texting_storage.connection_string,
                                               idempotency.TABLE)
    real_on_table = app_storage.on_table
    calls = 0
    deleted: list[str] = []

    async def staged(name, operation):
        nonlocal calls
        if name == idempotency.TABLE:
            calls += 1
            if calls == 3:
                table.get_entity(partition, row)  # there until now (raises if the key is wrong)
                table.delete_entity(partition, row)
                deleted.append(row)
        return await real_on_table(name, operation)

    monkeypatch.setattr(app_storage, "on_table", staged)
    try:
        yield
    finally:
        monkeypatch.setattr(app_storage, "on_table", real_on_table)
        table.close()
    assert deleted == [row], "the race was not staged: no take-over reached its update"


@pytest.mark.parametrize(("function", "body"), ENDPOINTS, ids=[f for f, _ in ENDPOINTS])
def test_an_expired_key_deleted_by_the_sweep_during_its_take_over_is_not_a_500(
    worker_host, texting_storage, twilio_api, monkeypatch, function, body
):
    """A client reuses a key whose 24 h are over while idempotency_expiry is sweeping: claim()
    reads the expired row (insert -> 409 -> read), the sweep deletes it (its etag still
    matches), and claim()'s update_entity(IfNotModified) gets 404 ResourceNotFoundError, which
    claim() does not catch (it catches ResourceModifiedError only)."""
    monkeypatch.setattr(idempotency, "TTL", datetime.timedelta(seconds=-1))  # born expired
    key = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    data = json.dumps(body)
    first = worker_host.request("POST", f"/api/{function}", headers=headers, body=data,
                                base_url=PUBLIC)
    assert first.status in (201, 202), first.body

    with deleted_before_its_update(monkeypatch, texting_storage, function,
                                   idempotency.row_key(key)):  # what delete_expired does
        again = worker_host.request("POST", f"/api/{function}", headers=headers, body=data,
                                    base_url=PUBLIC)

    _in_flight(again)
    # The retry finds no row: it claims the key afresh and is answered.
    retried = worker_host.request("POST", f"/api/{function}", headers=headers, body=data,
                                  base_url=PUBLIC)
    assert retried.status == first.status, retried.body


def test_a_key_released_by_a_concurrent_retry_during_the_lookup_is_not_a_500(
    worker_host, texting_storage, twilio_api, monkeypatch
):
    """Two retries of a key whose send had an unknown outcome (a 'sending' row older than
    RELEASE_AFTER): both read the row and ask Twilio's list (a network round trip). The first
    takes the key over, gets 429 from Twilio and releases it (delete). The second's
    update_entity(etag) then gets 404, not 412: ResourceNotFoundError escapes claim()."""
    twilio_api.error(500, 20500, "Internal Server Error")  # first attempt: unknown outcome
    key = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    data = json.dumps({"to": TO, "body": "hi"})
    assert worker_host.request("POST", "/api/send_sms", headers=headers, body=data,
                               base_url=PUBLIC).status == 502
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))
    monkeypatch.setattr(idempotency, "RELEASE_AFTER", datetime.timedelta(0))

    with deleted_before_its_update(monkeypatch, texting_storage, "send_sms",
                                   idempotency.row_key(key)):  # the other retry's _release
        again = worker_host.request("POST", "/api/send_sms", headers=headers, body=data,
                                    base_url=PUBLIC)

    _in_flight(again)


def test_a_voicemail_notification_key_released_during_its_take_over_does_not_500_the_webhook(
    worker_host, texting_storage, twilio_api, app_settings, monkeypatch
):
    """The same escape through a Twilio webhook: recording_status -> voicemail._notify ->
    once.text -> idempotency.claim. acknowledge() catches only webhooks.Retry, so Twilio gets a
    500 (the rule: 204 or 503, never a 500)."""
    from urllib.parse import urlencode

    from conftest import ACCOUNT_SID, AUTH_TOKEN, signature

    from shared.callflows import loading, voicemail
    from shared.common import stamp

    app_settings.setenv("CALL_FLOW", "flows/calls.example.json")
    app_settings.setenv("TWILIO_PHONE_NUMBER", "+14155550142")
    monkeypatch.setattr(stamp, "SUFFIX", ".no-stamps-in-these-tests")
    loading.forget()
    recording = "RE" + uuid.uuid4().hex
    url = f"{PUBLIC}/api/recording_status?step=voicemail&caller=%2B14155550123"
    params = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": ACCOUNT_SID,
              "RecordingSid": recording, "RecordingStatus": "completed",
              "RecordingDuration": "42"}

    def callback():
        return worker_host.request(
            "POST", url, body=urlencode(params), base_url=PUBLIC,
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "X-Twilio-Signature": signature(url, params, AUTH_TOKEN)})

    twilio_api.error(500, 20500, "Internal Server Error")  # the text's outcome is unknown
    assert callback().status == 503  # Twilio will retry the callback
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))
    monkeypatch.setattr(idempotency, "RELEASE_AFTER", datetime.timedelta(0))
    with deleted_before_its_update(  # a concurrent delivery of the callback released it
            monkeypatch, texting_storage, voicemail.FUNCTION,
            idempotency.row_key(f"{recording}:+14155550100:recording")):
        retried = callback()
    loading.forget()

    _no_escape(retried)
    assert retried.status in (204, 503)


@pytest.mark.parametrize("meanwhile", ["claimed afresh", "deleted"])
def test_the_sweep_deletes_the_rest_when_one_expired_key_changes_under_it(
    worker_host, texting_storage, twilio_api, monkeypatch, caplog, meanwhile
):
    """The sweep deletes a transaction's hundred keys only if each is unchanged since its query.
    One key claimed afresh (or deleted by another sweep) in between failed the whole transaction
    and logged a false ERROR; now the others are deleted one at a time and that one is left."""
    import logging

    from azure.data.tables import TableClient, UpdateMode
    from conftest import run_app

    from shared.records import storage as app_storage

    keys = [str(uuid.uuid4()) for _ in range(3)]
    for key in keys:
        sent = worker_host.request(
            "POST", "/api/send_sms", body=json.dumps({"to": TO, "body": "hi"}), base_url=PUBLIC,
            headers={"Content-Type": "application/json", "Idempotency-Key": key})
        assert sent.status == 201, sent.body
    rows = [idempotency.row_key(key) for key in keys]
    table = TableClient.from_connection_string(texting_storage.connection_string,
                                               idempotency.TABLE)
    for other in table.list_entities(select=["PartitionKey", "RowKey"]):  # earlier tests' keys
        if other["RowKey"] not in rows:
            table.delete_entity(other["PartitionKey"], other["RowKey"])
    later = datetime.datetime.now(datetime.UTC) + idempotency.TTL + datetime.timedelta(hours=1)
    monkeypatch.setattr(idempotency, "_now", lambda: later)
    real_bounded = app_storage.bounded
    contested = rows[1]

    async def changed_after_the_query(operation, service="table"):
        if "submit_transaction" not in getattr(operation, "__qualname__", ""):
            return await real_bounded(operation, service)  # the table's creation, the sweep
        # The sweep's first transaction, after its query read the etags; then storage as it is.
        if meanwhile == "deleted":
            table.delete_entity("send_sms", contested)
        else:
            table.upsert_entity({"PartitionKey": "send_sms", "RowKey": contested,
                                 "State": "claimed"}, mode=UpdateMode.MERGE)
        monkeypatch.setattr(app_storage, "bounded", real_bounded)
        return await real_bounded(operation, service)

    monkeypatch.setattr(app_storage, "bounded", changed_after_the_query)
    with caplog.at_level(logging.INFO, logger="shared.records.idempotency"):
        deleted = run_app(idempotency.delete_expired())

    left = {e["RowKey"] for e in table.query_entities("PartitionKey eq 'send_sms'")
            if e["RowKey"] in rows}
    table.close()
    assert left == ({contested} if meanwhile == "claimed afresh" else set())
    # A key gone already counts or not as the SDK says (its delete_entity ignores a 404).
    assert deleted == 2 if meanwhile == "claimed afresh" else deleted in (2, 3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert f"outcome=swept deleted={deleted}" in caplog.text
