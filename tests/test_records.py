"""Status callbacks and the record of every call and message, end to end through the real worker
with a real Azurite process and the Twilio double: out of order, twice, unknown SIDs, storage
going down and coming back, and reading records back by SID and newest first."""

from __future__ import annotations

import base64
import itertools
import json
import re
from urllib.parse import urlencode

import pytest
from conftest import ACCOUNT_SID, AUTH_TOKEN, TWILIO_NUMBER, run_app
from twilio.request_validator import RequestValidator
from twilio_double import default_created_call, default_created_message

from devhost.worker_host import HostResponse, WorkerHost

PUBLIC = "https://myapp.azurewebsites.net"
TO = "+14155550123"
_serial = itertools.count(1)


def new_sid(prefix: str) -> str:
    return f"{prefix}{next(_serial):032x}"


@pytest.fixture
def storage(texting_storage):
    """The app's storage is a real Azurite, with no opt-out an earlier test left (a text to a
    number another test opted out would be refused); each test gets SIDs of its own."""
    return texting_storage


@pytest.fixture
def fresh_sids(twilio_api):
    """Every call or message the double creates gets a new SID."""
    twilio_api.created_call_json = lambda req: {**default_created_call(req), "sid": new_sid("CA")}
    twilio_api.created_message_json = lambda req: {
        **default_created_message(req),
        "sid": new_sid("SM"),
    }
    return twilio_api


def post_json(host: WorkerHost, path: str, body: dict) -> HostResponse:
    return host.request(
        "POST",
        path,
        headers={"Content-Type": "application/json"},
        body=json.dumps(body),
        base_url=PUBLIC,
    )


def callback(host: WorkerHost, function: str, params: dict[str, str]) -> HostResponse:
    """A status callback as Twilio sends it: POSTed to the URL make_call gave it (Twilio leaves
    the #rc=... retry fragment out of the URL it signs, and the server never sees it)."""
    url = f"{PUBLIC}/api/{function}"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    return host.request(
        "POST",
        f"/api/{function}",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
        body=urlencode(params),
        base_url=PUBLIC,
    )


def call_event(sid: str, status: str, sequence: int, **extra: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": TWILIO_NUMBER,
        "To": TO,
        "CallStatus": status,
        "SequenceNumber": str(sequence),
        "Timestamp": f"Wed, 02 Dec 2026 10:00:{sequence:02d} +0000",
        "CallbackSource": "call-progress-events",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def message_event(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": TWILIO_NUMBER,
        "To": TO,
        "MessageStatus": status,
        "SmsStatus": status,
        "ApiVersion": "2010-04-01",
        **extra,
    }


def get(host: WorkerHost, path: str) -> HostResponse:
    return host.request("GET", path, base_url=PUBLIC)


# --- calls ---------------------------------------------------------------------------------------


def test_a_call_with_callbacks_out_of_order_and_twice_ends_completed(
    worker_host, storage, fresh_sids
):
    placed = post_json(worker_host, "/api/make_call", {"to": TO, "message": "Table ready"})
    assert placed.status == 201
    assert placed.json()["recorded"] is True
    sid = placed.json()["sid"]
    sent = fresh_sids.requests[0].data
    assert sent["StatusCallback"] == f"{PUBLIC}/api/call_status#rc=2&rp=ct,5xx"
    assert sent["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]

    arrivals = [
        call_event(sid, "completed", 3, CallDuration="42"),
        call_event(sid, "ringing", 1),
        call_event(sid, "initiated", 0),
        call_event(sid, "completed", 3, CallDuration="42"),  # the same event, delivered again
        call_event(sid, "in-progress", 2, AnsweredBy="human"),
    ]
    answers = [callback(worker_host, "call_status", params) for params in arrivals]

    assert [a.status for a in answers] == [204] * 5
    assert all(a.body == b"" for a in answers)
    record = get(worker_host, f"/api/calls/{sid}").json()
    assert record["status"] == "completed"
    assert (record["kind"], record["to"], record["from"]) == ("call", TO, TWILIO_NUMBER)
    assert record["created_status"] == "queued"
    assert record["text"] == "Table ready"
    assert record["recorded_by"] == "app"
    assert [e["status"] for e in record["events"]] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert record["events"][3]["CallDuration"] == "42"
    assert record["events"][2]["AnsweredBy"] == "human"


def test_a_callback_for_a_call_the_app_did_not_place_is_recorded(worker_host, storage):
    sid = new_sid("CA")

    assert callback(worker_host, "call_status", call_event(sid, "busy", 2)).status == 204

    record = get(worker_host, f"/api/calls/{sid}").json()
    assert record["status"] == "busy"
    assert record["recorded_by"] == "callback"
    assert record["to"] == TO


def test_a_forged_callback_is_refused_and_stores_nothing(worker_host, storage):
    sid = new_sid("CA")
    params = call_event(sid, "completed", 3)
    forged = worker_host.request(
        "POST",
        "/api/call_status",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": RequestValidator("not-the-token").compute_signature(
                f"{PUBLIC}/api/call_status", params
            ),
        },
        body=urlencode(params),
        base_url=PUBLIC,
    )

    assert forged.status == 403
    assert get(worker_host, f"/api/calls/{sid}").status == 404


# --- messages ------------------------------------------------------------------------------------


def test_a_message_through_delivered(worker_host, storage, fresh_sids):
    sent = post_json(worker_host, "/api/send_sms", {"to": TO, "body": "Your table is ready"})
    assert sent.status == 201 and sent.json()["recorded"] is True
    sid = sent.json()["sid"]

    for status in ("delivered", "sent", "delivered"):  # out of order, and twice
        extra = {"RawDlrDoneDate": "2612021001"} if status == "delivered" else {}
        assert callback(worker_host, "message_status", message_event(sid, status, **extra)).status == 204

    record = get(worker_host, f"/api/messages/{sid}").json()
    assert record["status"] == "delivered"
    assert record["text"] == "Your table is ready"
    assert [e["status"] for e in record["events"]] == ["sent", "delivered"]
    assert record["events"][1]["RawDlrDoneDate"] == "2612021001"


def test_a_message_through_undelivered_keeps_the_error_code(worker_host, storage, fresh_sids):
    sid = post_json(worker_host, "/api/send_sms", {"to": TO, "body": "hi"}).json()["sid"]

    callback(worker_host, "message_status", message_event(sid, "sent"))
    callback(
        worker_host,
        "message_status",
        message_event(sid, "undelivered", ErrorCode="30007", ErrorMessage="Carrier violation"),
    )

    record = get(worker_host, f"/api/messages/{sid}").json()
    assert record["status"] == "undelivered"
    assert record["error_code"] == "30007"
    assert record["events"][-1]["ErrorMessage"] == "Carrier violation"


# --- reading back --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/calls/CA123", 400),
        ("/api/calls/SM" + "a" * 32, 400),
        ("/api/messages/CA" + "a" * 32, 400),
        ("/api/calls/CA" + "f" * 32, 404),
        ("/api/messages/MM" + "f" * 32, 404),
        ("/api/calls?limit=0", 400),
        ("/api/calls?limit=101", 400),
        # More digits than int() takes (4,300): an anonymous 500 on every paged listing.
        ("/api/calls?limit=" + "0" * 4300 + "5", 400),
        ("/api/messages?limit=" + "0" * 4300 + "5", 400),
        ("/api/calls?continuation=bogus", 400),
        # Nested a thousand deep: json raises RecursionError, not ValueError (an attack run's).
        ("/api/calls?continuation=" + base64.urlsafe_b64encode(b"[" * 1000).decode(), 400),
        ("/api/messages?continuation=" + base64.urlsafe_b64encode(b"{\"a\":" * 1000).decode(),
         400),
        # Valid JSON whose key holds a lone surrogate, which no request can carry (UTF-8 cannot
        # encode it): the storage SDK raised UnicodeEncodeError, an anonymous 500.
        ("/api/calls?continuation=" + base64.urlsafe_b64encode(
            b'{"PartitionKey": "call", "RowKey": "\\ud800"}').decode(), 400),
        # JSON of another shape than Table Storage's tokens: read as the first page (an attack
        # run's).
        ("/api/calls?continuation=" + base64.urlsafe_b64encode(b"{}").decode(), 400),
        ("/api/calls?continuation=" + base64.urlsafe_b64encode(b'{"a": "b"}').decode(), 400),
        ("/api/calls?continuation=" + base64.urlsafe_b64encode(
            b'{"PartitionKey": "call", "RowKey": ""}').decode(), 400),
    ],
)
def test_bad_or_unknown_sids_and_queries(worker_host, storage, path, status):
    response = get(worker_host, path)

    assert response.status == status
    assert isinstance(response.json()["error"], str)
    # An error quotes what was sent: a browser never reads it as anything but JSON.
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_records_are_never_kept_by_a_browser_or_proxy(worker_host, storage):
    """Phone numbers and texts (found by an attack run: only voice_token said no-store)."""
    for path in ("/api/calls", "/api/messages?limit=5"):
        response = get(worker_host, path)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_message_sid_is_not_found_among_calls(worker_host, storage):
    sid = new_sid("CA")
    callback(worker_host, "call_status", call_event(sid, "ringing", 1))

    assert get(worker_host, f"/api/calls/{sid}").status == 200
    assert get(worker_host, f"/api/messages/SM{sid[2:]}").status == 404


def test_the_list_is_newest_first_a_page_at_a_time(worker_host, storage, fresh_sids):
    sids = [post_json(worker_host, "/api/make_call", {"to": TO}).json()["sid"] for _ in range(5)]

    first = get(worker_host, "/api/calls?limit=2").json()
    second = get(worker_host, first["next_url"]).json()

    assert [c["sid"] for c in first["calls"]] == sids[::-1][:2]
    assert [c["sid"] for c in second["calls"]] == sids[::-1][2:4]
    assert first["next"] and first["next_url"].startswith("/api/calls?limit=2&continuation=")
    assert all(c["status"] == "queued" and "events" not in c for c in first["calls"])


# --- storage down ---------------------------------------------------------------------------------


def test_storage_down_then_back(worker_host, storage, fresh_sids, caplog):
    storage.stop()
    try:
        placed = post_json(worker_host, "/api/make_call", {"to": TO})
        sid = placed.json()["sid"]
        event = call_event(sid, "completed", 3)
        down = callback(worker_host, "call_status", event)
        listing = get(worker_host, "/api/calls")
    finally:
        storage.start()

    assert placed.status == 201  # the call is placed: never hide that
    assert placed.json()["recorded"] is False
    assert down.status == 503 and down.body == b""
    assert listing.status == 503 and "storage" in listing.json()["error"]
    assert down.elapsed < 12 and placed.elapsed < 12  # inside the host's 12 s and Twilio's 15 s
    assert "outcome=not-recorded" in caplog.text and "outcome=retry" in caplog.text

    # Twilio retries the callback (rp=5xx): it lands, and the record exists from it.
    assert callback(worker_host, "call_status", event).status == 204
    record = get(worker_host, f"/api/calls/{sid}").json()
    assert record["status"] == "completed"
    assert record["recorded_by"] == "callback"


def test_storage_not_configured_is_503_for_callbacks_and_500_for_reads(worker_host, app_settings):
    app_settings.delenv("AzureWebJobsStorage", raising=False)
    sid = new_sid("CA")

    assert callback(worker_host, "call_status", call_event(sid, "ringing", 1)).status == 503
    response = get(worker_host, f"/api/calls/{sid}")
    assert response.status == 500
    assert response.json()["settings"] == ["AzureWebJobsStorage"]


@pytest.mark.parametrize(("value", "usable"), [
    ("DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey=a2V5;"
     "EndpointSuffix=core.windows.net", True),
    ("AccountName=contoso;SharedAccessSignature=?sv=2024-11-04&sig=c2ln", True),
    ("TableEndpoint=https://t.example;QueueEndpoint=https://q.example;"
     "SharedAccessSignature=sv=2024-11-04&sig=c2ln", True),
    ("UseDevelopmentStorage=true;", True),
    ("a=b;;c", False),
    ("AccountKey=a2V5", False),
    ("TableEndpoint=https://t.example;QueueEndpoint=https://q.example;AccountKey=a2V5", False),
    ("AccountName=contoso", False),
    ("@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/s/)", False),
])
def test_the_settings_check_knows_a_usable_connection_string(value, usable):
    """Judged when the settings are read, before a call or a text goes out, not by the storage
    library at the first storage call."""
    from shared.common.settings import SettingsError
    from shared.records.settings import STORAGE_SETTINGS, load_storage_settings

    env = {**dict.fromkeys(STORAGE_SETTINGS, ""), "AzureWebJobsStorage": value}
    if usable:
        assert load_storage_settings(env).connection_string
    else:
        with pytest.raises(SettingsError) as refused:
            load_storage_settings(env)
        assert refused.value.names == ["AzureWebJobsStorage"]
        assert "vault.azure.net" not in str(refused.value)


@pytest.mark.parametrize(("uri", "usable"), [
    ("https://contoso.table.core.windows.net", True),
    ("http://127.0.0.1:10002/devstoreaccount1", True),  # Azurite
    ("http://localhost:10002/devstoreaccount1", True),
    ("http://[::1]:10002/devstoreaccount1", True),
    ("http://127.0.0.1.example:10002/devstoreaccount1", False),  # not this machine
    ("::junk", False),  # reached the storage SDK: a TypeError at every use (an attack run's)
    ("https://[::1", False),
    ("http://contoso.table.core.windows.net", False),  # the key or token in clear
    ("https://contoso.table.core.windows.net:99999", False),
])
def test_the_settings_check_knows_a_usable_table_service_uri(uri, usable):
    """With a managed identity the app reaches storage by its service URIs (no connection
    string): judged when the settings are read, as the connection string is."""
    from shared.common.settings import SettingsError
    from shared.records.settings import STORAGE_SETTINGS, load_storage_settings

    env = {**dict.fromkeys(STORAGE_SETTINGS, ""),
           "AzureWebJobsStorage__tableServiceUri": uri,
           "AzureWebJobsStorage__queueServiceUri": "https://contoso.queue.core.windows.net",
           "AzureWebJobsStorage__credential": "managedidentity"}
    if usable:
        assert load_storage_settings(env).table_endpoint == uri
    else:
        with pytest.raises(SettingsError) as refused:
            load_storage_settings(env)
        assert refused.value.names == ["AzureWebJobsStorage__tableServiceUri"]


@pytest.mark.parametrize("value", [
    "a=b;;c",  # the storage library refused it at the first storage call, with a traceback
    "AccountKey=abc",  # a key but no account or endpoints
    "@Microsoft.KeyVault(SecretUri=https://vault.vault.azure.net/secrets/storage/)",
    # Failed at the first storage call as "no credential could sign in ... az login" (an attack
    # run's): the key does not decode.
    "AccountName=devstoreaccount1;AccountKey=not-base64!!",
], ids=["parts", "no-account", "key-vault-reference", "key-not-base64"])
def test_a_storage_connection_string_the_library_cannot_use_is_named(worker_host, app_settings,
                                                                     caplog, value):
    app_settings.setenv("AzureWebJobsStorage", value)
    sid = new_sid("CA")

    response = get(worker_host, f"/api/calls/{sid}")

    assert response.status == 500
    assert response.json()["settings"] == ["AzureWebJobsStorage"]
    assert "Traceback" not in caplog.text and "vault.azure.net" not in caplog.text


@pytest.mark.parametrize(
    ("kind", "status", "path"),
    [("call-status", "ringing", "calls"), ("message-status", "undelivered", "messages")],
)
def test_the_simulator_sends_status_callbacks_the_app_records(
    worker_host, storage, kind, status, path
):
    from devhost import simulate

    function = simulate.KINDS[kind]
    hook = simulate.build(
        kind, f"{PUBLIC}/api/{function}", AUTH_TOKEN, status=status, params={"ErrorCode": "30007"}
    )

    response = worker_host.request(
        "POST", f"/api/{function}", headers=hook.headers, body=hook.body, base_url=PUBLIC
    )

    assert response.status == 204
    sid = hook.params["CallSid" if kind == "call-status" else "MessageSid"]
    record = get(worker_host, f"/api/{path}/{sid}").json()
    assert record["status"] == status
    assert record["error_code"] == "30007"


def test_storage_that_never_answers_is_a_503_within_the_deadline(
    worker_host, app_settings, monkeypatch
):
    """A storage endpoint that accepts connections and then says nothing (a hung front end):
    the callback still answers 503 itself, at the deadline, not at the host's timeout."""
    import socket
    import threading

    from shared.records import storage

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    app_settings.setenv(
        "AzureWebJobsStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=a2V5;"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
    )
    monkeypatch.setattr(storage, "DEADLINE", 1.0)
    try:
        response = callback(worker_host, "call_status", call_event(new_sid("CA"), "ringing", 1))
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()

    assert response.status == 503
    assert response.elapsed < 3
    assert accepted, "the app did reach the hung storage"


def test_with_a_managed_identity_one_credential_signs_every_client_and_is_closed_with_them():
    """A credential per client fetched a token per client (the table service, each queue) and
    was never closed: its session outlived the host (an attack run's "Unclosed client
    session")."""
    from shared.records import storage
    from shared.records.settings import STORAGE_SETTINGS, load_storage_settings

    env = {**dict.fromkeys(STORAGE_SETTINGS, ""),
           "AzureWebJobsStorage__tableServiceUri": "https://contoso.table.core.windows.net",
           "AzureWebJobsStorage__queueServiceUri": "https://contoso.queue.core.windows.net",
           "AzureWebJobsStorage__credential": "managedidentity",
           "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000000"}
    closed: list[str] = []

    async def scenario() -> None:
        settings = load_storage_settings(env)
        service = storage._service(settings)
        credential = storage._credential(settings)  # what a queue client is given
        assert service.credential is credential
        assert storage._credential(settings) is credential

        async def close() -> None:
            closed.append("credential")

        credential.close = close
        await storage.close()

    run_app(scenario())

    assert closed == ["credential"]


def test_a_storage_key_storage_refuses_is_named_as_such(worker_host, app_settings, azurite_storage,
                                                        caplog):
    """Said only as "storage failed: HttpResponseError" before."""
    wrong = re.sub(r"AccountKey=[^;]*", "AccountKey=" + base64.b64encode(b"x" * 64).decode(),
                   azurite_storage.connection_string)
    app_settings.setenv("AzureWebJobsStorage", wrong)

    response = get(worker_host, "/api/calls")

    assert response.status == 503
    assert "storage refused the app's credentials (HTTP 403" in caplog.text
    assert "x" * 20 not in caplog.text


def test_no_credential_at_all_is_named_with_what_to_do():
    """A script run with only an account name (the default credential chain, nothing signed in)
    said "storage failed: ClientAuthenticationError", after a dozen lines of azure-identity's
    (an attack run's)."""
    from azure.core.exceptions import ClientAuthenticationError

    from shared.records import storage

    async def sign_in() -> None:
        raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")

    with pytest.raises(storage.StorageUnavailable) as failed:
        run_app(storage.bounded(sign_in()))

    assert str(failed.value).startswith("no credential could sign in to storage")
    assert "az login" in str(failed.value)


def test_storage_that_does_not_answer_is_named_with_what_to_check(worker_host, app_settings,
                                                                   caplog):
    """Said only as "storage failed: ServiceRequestError" (an attack run's)."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app_settings.setenv("AzureWebJobsStorage", (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        + base64.b64encode(b"k" * 32).decode()
        + f";TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"))

    response = get(worker_host, "/api/calls")

    assert response.status == 503
    assert "storage could not be reached" in caplog.text and "Azurite running" in caplog.text
