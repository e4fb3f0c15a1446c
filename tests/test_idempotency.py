"""Idempotency-Key on make_call and send_sms, through the real worker with Azurite and the
Twilio double: one key, at most one call or message, whatever the retries and races."""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from devhost.worker_host import HostResponse, WorkerHost
from shared.records import idempotency

PUBLIC = "https://myapp.azurewebsites.net"
TO = "+14155550123"
CALL = {"to": TO, "message": "Your table is ready"}
SMS = {"to": TO, "body": "Your table is ready"}


@pytest.fixture
def storage(texting_storage):
    """Azurite, with no opt-out an earlier test left (a text to TO must not be refused)."""
    return texting_storage


def send(
    host: WorkerHost, path: str, body: dict | str, key: str | None, content_type: str = "application/json"
) -> HostResponse:
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Idempotency-Key"] = key
    data = body if isinstance(body, str) else json.dumps(body)
    return host.request("POST", path, headers=headers, body=data, base_url=PUBLIC)


def new_key() -> str:
    return str(uuid.uuid4())


ENDPOINTS = [("/api/make_call", CALL), ("/api/send_sms", SMS)]
IDS = ["make_call", "send_sms"]


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=IDS)
def test_a_retry_after_success_replays_the_first_answer(worker_host, storage, twilio_api, path, body):
    key = new_key()

    first = send(worker_host, path, body, key)
    second = send(worker_host, path, body, key)

    assert first.status == 201
    assert (second.status, second.json()) == (201, first.json())
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(twilio_api.creates) == 1
    for answer in (first, second):  # a number and a SID: never kept by a browser or proxy
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=IDS)
def test_the_same_key_for_another_request_is_422(worker_host, storage, twilio_api, path, body):
    key = new_key()
    assert send(worker_host, path, body, key).status == 201

    other = send(worker_host, path, {**body, "to": "+14155550124"}, key)

    assert other.status == 422
    assert "different request" in other.json()["error"]
    assert len(twilio_api.creates) == 1


def test_keys_are_per_function(worker_host, storage, twilio_api):
    key = new_key()

    assert send(worker_host, "/api/make_call", CALL, key).status == 201
    assert send(worker_host, "/api/send_sms", SMS, key).status == 201
    assert len(twilio_api.creates) == 2


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=IDS)
def test_two_concurrent_requests_with_one_key_reach_twilio_once(
    worker_host, storage, twilio_api, path, body
):
    twilio_api.delay = 0.4
    key = new_key()

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: send(worker_host, path, body, key), range(2)))

    assert sorted(a.status for a in answers) == [201, 409]
    [busy] = [a for a in answers if a.status == 409]
    assert busy.headers["Retry-After"] == idempotency.RETRY_AFTER
    assert len(twilio_api.creates) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [({"to": "+19005550100"}, 403), ({"to": "not a number"}, 400)],
    ids=["policy-403", "bad-input-400"],
)
def test_a_refusal_before_twilio_is_replayed(worker_host, storage, twilio_api, body, status):
    key = new_key()

    first = send(worker_host, "/api/make_call", body, key)
    second = send(worker_host, "/api/make_call", body, key)

    assert first.status == second.status == status
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert twilio_api.requests == []


def test_a_refusal_by_twilio_is_replayed_without_asking_again(worker_host, storage, twilio_api):
    twilio_api.error(400, 21211, "The 'To' number is not a valid phone number.")
    key = new_key()

    first = send(worker_host, "/api/make_call", CALL, key)
    second = send(worker_host, "/api/make_call", CALL, key)

    assert (first.status, second.status) == (422, 422)
    assert second.json()["twilio_code"] == 21211
    assert len(twilio_api.requests) == 1


def test_a_rate_limited_attempt_releases_the_key(worker_host, storage, twilio_api):
    twilio_api.error(429, 20429, "Too Many Requests")
    key = new_key()

    assert send(worker_host, "/api/make_call", CALL, key).status == 503
    retried = send(worker_host, "/api/make_call", CALL, key)

    assert retried.status == 201
    assert "Idempotent-Replayed" not in retried.headers
    assert len(twilio_api.creates) == 2  # the first was refused by Twilio: nothing was created


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=IDS)
def test_a_timeout_after_creating_is_looked_up_not_sent_again(
    worker_host, storage, twilio_api, app_settings, monkeypatch, path, body
):
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    twilio_api.delay_after_create = 0.5  # Twilio made it, but its answer came too late
    key = new_key()

    first = send(worker_host, path, body, key)
    twilio_api.delay_after_create = 0
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))
    second = send(worker_host, path, body, key)
    third = send(worker_host, path, body, key)

    assert first.status == 504
    assert second.status == 201
    assert second.json()["sid"] == twilio_api.created[0]["sid"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert third.json() == second.json()
    assert len(twilio_api.creates) == 1
    lookups = [r for r in twilio_api.requests if r.method == "GET"]
    assert len(lookups) == 1 and lookups[0].params["To"] == TO


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=IDS)
def test_an_unknown_outcome_is_found_under_many_newer_creates_to_the_number(
    worker_host, storage, twilio_api, app_settings, monkeypatch, path, body
):
    """The lookup reads Twilio's list (the newest first) a page at a time past every entry
    created since: a retry hours later, after 120 more calls or texts to a busy number, still
    finds its own (it read only the newest 20, and called or texted again)."""
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    twilio_api.delay_after_create = 0.5
    key = new_key()
    assert send(worker_host, path, body, key).status == 504
    twilio_api.delay_after_create = 0
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "10")
    for _ in range(120):
        assert send(worker_host, path, body, None).status == 201  # no key: the same number
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))

    retried = send(worker_host, path, body, key)

    assert retried.status == 201
    assert retried.json()["sid"] == twilio_api.created[0]["sid"]
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert len(twilio_api.creates) == 121
    lookups = [r for r in twilio_api.requests if r.method == "GET"]
    assert len(lookups) == 3  # pages of 50: the first entry is on the third


def test_an_unknown_outcome_under_more_entries_than_the_lookup_reads_is_never_sent_again(
    worker_host, storage, twilio_api, app_settings, monkeypatch
):
    """Past the pages the lookup reads, it cannot say the create is not there: 503, and the
    key neither released nor sent again (a re-attack: it was released after a minute)."""
    from shared.outbound import twilio_client

    monkeypatch.setattr(twilio_client, "LOOKUP_PAGES", 2)
    monkeypatch.setattr(twilio_client, "LOOKUP_PAGE_SIZE", 5)
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    twilio_api.delay_after_create = 0.5
    key = new_key()
    assert send(worker_host, "/api/send_sms", SMS, key).status == 504
    twilio_api.delay_after_create = 0
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "10")
    for _ in range(12):
        assert send(worker_host, "/api/send_sms", SMS, None).status == 201
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))
    monkeypatch.setattr(idempotency, "RELEASE_AFTER", datetime.timedelta(0))

    retried = send(worker_host, "/api/send_sms", SMS, key)

    assert retried.status == 503 and "Twilio" in retried.json()["error"]
    assert len(twilio_api.creates) == 13


def test_an_unknown_outcome_with_nothing_at_twilio_waits_then_is_released(
    worker_host, storage, twilio_api, monkeypatch
):
    twilio_api.error(500, 20500, "Internal Server Error")  # failed, and created nothing
    key = new_key()

    assert send(worker_host, "/api/make_call", CALL, key).status == 502
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))
    waiting = send(worker_host, "/api/make_call", CALL, key)
    monkeypatch.setattr(idempotency, "RELEASE_AFTER", datetime.timedelta(0))
    released = send(worker_host, "/api/make_call", CALL, key)

    assert waiting.status == 409  # nothing found yet, but too soon to be sure
    assert released.status == 201
    assert len(twilio_api.creates) == 2


def test_an_expired_key_is_a_new_key(worker_host, storage, twilio_api, monkeypatch):
    monkeypatch.setattr(idempotency, "TTL", datetime.timedelta(seconds=-1))
    key = new_key()

    send(worker_host, "/api/make_call", CALL, key)
    again = send(worker_host, "/api/make_call", CALL, key)

    assert again.status == 201 and "Idempotent-Replayed" not in again.headers
    assert len(twilio_api.creates) == 2


@pytest.mark.parametrize(
    "key",
    ["", "  ", "x" * 256, "clé", "tab\there", "line\nbreak"],
    ids=["empty", "blanks", "long", "non-ascii", "tab", "newline"],
)
def test_a_malformed_key_is_400(worker_host, storage, twilio_api, key):
    response = send(worker_host, "/api/make_call", CALL, key)

    assert response.status == 400
    assert "Idempotency-Key" in response.json()["error"]
    assert twilio_api.requests == []


def test_blanks_around_a_key_are_not_part_of_it(worker_host, storage, twilio_api):
    key = new_key()
    first = send(worker_host, "/api/make_call", CALL, key)
    again = send(worker_host, "/api/make_call", CALL, f" {key}\t")

    assert first.status == again.status == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(twilio_api.creates) == 1


def test_storage_down_means_nothing_is_sent(worker_host, storage, twilio_api):
    storage.stop()
    try:
        response = send(worker_host, "/api/make_call", CALL, new_key())
    finally:
        storage.start()

    assert response.status == 503
    assert "nothing was sent" in response.json()["error"]
    assert twilio_api.requests == []


def test_without_the_header_every_request_is_sent(worker_host, storage, twilio_api):
    send(worker_host, "/api/make_call", CALL, None)
    send(worker_host, "/api/make_call", CALL, None)

    assert len(twilio_api.creates) == 2


def test_a_key_released_between_the_insert_and_the_read_is_claimed_afresh(
    worker_host, storage, twilio_api, monkeypatch
):
    """Another request releases the key (a 429, a settings error) just after this one's insert
    found it taken and before its read: this request claims it afresh instead of failing."""
    from azure.data.tables import TableClient

    from shared.records import storage as app_storage

    key = new_key()
    first = send(worker_host, "/api/send_sms", SMS, key)
    assert first.status == 201
    table = TableClient.from_connection_string(storage.connection_string, idempotency.TABLE)
    [row] = [r for r in table.list_entities() if r["PartitionKey"] == "send_sms"
             and r["RowKey"] == hashlib.sha256(key.encode()).hexdigest()]
    real_on_table = app_storage.on_table
    calls = []

    async def releasing_before_the_read(name, operation):
        calls.append(name)
        if name == idempotency.TABLE and len(calls) == 2:  # insert refused; now the read
            table.delete_entity(row["PartitionKey"], row["RowKey"])
        return await real_on_table(name, operation)

    monkeypatch.setattr(app_storage, "on_table", releasing_before_the_read)
    again = send(worker_host, "/api/send_sms", SMS, key)

    assert again.status == 201, again.body
    assert "Idempotent-Replayed" not in again.headers  # a fresh claim, sent as new
    assert len(twilio_api.creates) == 2
    table.close()


def test_a_principal_header_names_a_caller_only_with_app_service_authentication(
    worker_host, storage, twilio_api, app_settings
):
    """Without App Service authentication the X-MS-CLIENT-PRINCIPAL-ID header is the caller's
    own writing: the same key from "two principals" is one caller, replayed. With it on, the
    platform sets the header, and two signed-in users' keys are their own."""
    def as_principal(principal: str, key: str) -> HostResponse:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key,
                   "X-MS-CLIENT-PRINCIPAL-ID": principal}
        return worker_host.request("POST", "/api/send_sms", headers=headers,
                                   body=json.dumps(SMS), base_url=PUBLIC)

    key = new_key()
    forged = [as_principal(p, key) for p in ("alice", "bob")]
    app_settings.setenv("WEBSITE_AUTH_ENABLED", "True")
    other = new_key()
    signed_in = [as_principal(p, other) for p in ("alice", "bob")]

    assert [r.status for r in forged] == [201, 201]
    assert forged[1].headers.get("Idempotent-Replayed") == "true"
    assert [r.headers.get("Idempotent-Replayed") for r in signed_in] == [None, None]
    assert len(twilio_api.creates) == 3


# --- the sweep, by hand (scripts/sweep_keys.py: the local host runs no timers) ------------------

def test_the_sweep_script_deletes_the_expired_keys_only(storage):
    import datetime
    import subprocess
    import sys

    from azure.data.tables import TableServiceClient
    from conftest import REPO

    from shared.records import idempotency

    now = datetime.datetime.now(datetime.UTC)
    old, fresh = idempotency.row_key(new_key()), idempotency.row_key(new_key())
    with TableServiceClient.from_connection_string(storage.connection_string) as service:
        table = service.create_table_if_not_exists(idempotency.TABLE)
        for row_key, expires in ((old, now - datetime.timedelta(minutes=1)),
                                 (fresh, now + idempotency.TTL)):
            table.upsert_entity({"PartitionKey": "send_sms", "RowKey": row_key,
                                 "State": "done", "ExpiresAt": expires})

        result = subprocess.run(
            [sys.executable, "scripts/sweep_keys.py"], cwd=REPO, capture_output=True, text=True,
            timeout=60, env={"PATH": "/usr/bin:/bin",
                             "AzureWebJobsStorage": storage.connection_string})
        left = {e["RowKey"] for e in table.query_entities(
            "PartitionKey eq 'send_sms'", select=["RowKey"])}

    assert result.returncode == 0, result.stderr
    assert "deleted" in result.stdout
    assert "Unclosed" not in result.stderr  # its storage session closed on its own loop
    assert old not in left and fresh in left


def test_the_sweep_script_names_a_missing_storage_setting(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sweep_keys.py")], cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
        # Set and empty: it wins over a developer's local.settings.json, as on the local host.
        env={"PATH": "/usr/bin:/bin", "AzureWebJobsStorage": ""})

    assert result.returncode == 2
    assert "AzureWebJobsStorage" in result.stderr


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=IDS)
@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_a_malformed_storage_setting_is_named_not_called_unavailable(
    worker_host, twilio_api, app_settings, path, body, keyed
):
    """With AzureWebJobsStorage malformed, a keyed request and send_sms's opt-out check said
    "storage is unavailable ... try again shortly" (503), which no retry could change (an attack
    run's). A make_call without a key places the call unrecorded, as before."""
    app_settings.setenv("AzureWebJobsStorage", "garbage")

    response = send(worker_host, path, body, new_key() if keyed else None)

    if path == "/api/make_call" and not keyed:
        assert response.status == 201 and response.json()["recorded"] is False
        return
    assert response.status == 500, response.body
    assert response.json()["settings"] == ["AzureWebJobsStorage"]
    assert twilio_api.requests == []


@pytest.mark.parametrize(("path", "body"), ENDPOINTS, ids=IDS)
def test_a_record_found_after_an_unknown_outcome_keeps_twilios_creation_time(
    worker_host, storage, twilio_api, app_settings, monkeypatch, path, body
):
    """It was written with the time of the lookup, which moved it in the newest-first list (an
    attack run's: 20 s later)."""
    import time
    from email.utils import formatdate, parsedate_to_datetime

    from twilio_double import default_created_call, default_created_message

    made = formatdate(time.time() - 3, usegmt=True)  # within the lookup's clock skew
    twilio_api.created_call_json = lambda req: default_created_call(req) | {"date_created": made}
    twilio_api.created_message_json = lambda req: default_created_message(req) | {
        "date_created": made}
    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    twilio_api.delay_after_create = 0.5  # Twilio made it, but its answer came too late
    key = new_key()

    assert send(worker_host, path, body, key).status == 504
    twilio_api.delay_after_create = 0
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))
    found = send(worker_host, path, body, key)

    assert found.status == 201
    kind = "calls" if path == "/api/make_call" else "messages"
    shown = worker_host.request("GET", f"/api/{kind}/{found.json()['sid']}", base_url=PUBLIC)
    created = datetime.datetime.fromisoformat(shown.json()["created_at"])
    assert created == parsedate_to_datetime(made)
