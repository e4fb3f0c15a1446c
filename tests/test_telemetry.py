"""Telemetry (shared.telemetry, issue 25) through the app's public surface: HTTP into the real
worker in-process (devhost), Azurite for the records and the Twilio double, with OpenTelemetry's
in-memory span exporter and metric reader installed in place of Azure Monitor's.

What is held: a make_call's spans (the invocation continuing the host's trace context, the
Twilio request, the storage requests) and their attributes; its status callbacks' spans linked
to the create's; the metrics, and the attributes the alert rules and the workbook read, each
through the function that emits it; no exported span, metric or log line carrying a full phone
number, a body or a secret; telemetry unset costs the webhooks no import; and an ingestion
endpoint that refuses or never answers holds no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from conftest import ACCOUNT_SID, AUTH_TOKEN, SECRETS, TWILIO_NUMBER, run_app, signed_form_request
from twilio.request_validator import RequestValidator
from twilio_double import default_created_call

from devhost.pytest_plugin import AZURITE_ACCOUNT
from devhost.worker_host import HostResponse, QueueMessageData, WorkerHost
from shared import telemetry
from shared.telemetry import names, settings

PUBLIC = "https://myapp.azurewebsites.net"
TO = "+14155550123"
MESSAGE = "Your table is ready by the window"
HOST_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HOST_PARENT = f"00-{HOST_TRACE}-00f067aa0ba902b7-01"


@dataclass
class Captured:
    exporter: Any
    reader: Any

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[Any]:
        return [span for span in self.spans() if span.name == name]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], float]]]:
        """Each metric's points since the last call: (attributes, value or histogram count)."""
        found: dict[str, list[tuple[dict[str, Any], float]]] = {}
        data = self.reader.get_metrics_data()
        for resource in (data.resource_metrics if data else []):
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        value = point.count if value is None else value
                        if value:
                            found.setdefault(metric.name, []).append(
                                (dict(point.attributes), value))
        return found


@pytest.fixture(scope="session")
def otel() -> tuple[Any, Any, Any, Any]:
    """In-memory exporter and reader, behind the same scrubbing processor as on Azure. The
    global tracer provider is this one too: the Azure SDKs trace through the global one."""
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared.telemetry.runtime import Scrubber

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(Scrubber())
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    delta = AggregationTemporality.DELTA
    reader = InMemoryMetricReader(preferred_temporality={Counter: delta, Histogram: delta})
    return exporter, reader, tracer_provider, MeterProvider(metric_readers=[reader])


@pytest.fixture
def captured(otel) -> Iterator[Captured]:
    exporter, reader, tracer_provider, meter_provider = otel
    telemetry.use_providers(tracer_provider, meter_provider)
    reader.get_metrics_data()  # what earlier tests counted is not this test's
    exporter.clear()
    yield Captured(exporter, reader)
    telemetry.use_providers(None, None)
    from azure.core.settings import settings as azure_settings

    azure_settings.tracing_implementation = None


@pytest.fixture
def calls(twilio_api, texting_storage, app_settings):
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    sids = iter(f"CA{n:032x}" for n in range(0x7E1E0000, 0x7E1F0000))
    twilio_api.created_call_json = lambda req: {**default_created_call(req), "sid": next(sids)}
    return twilio_api


def place_call(host: WorkerHost, **headers: str) -> Any:
    response = host.request(
        "POST", "/api/make_call", headers={"Content-Type": "application/json", **headers},
        body=json.dumps({"to": TO, "message": MESSAGE}), base_url=PUBLIC,
    )
    assert response.status == 201, response.body
    return json.loads(response.body)


def status_callback(host: WorkerHost, url: str, params: dict[str, str]) -> Any:
    """POST to the status callback URL make_call gave Twilio, signed over it (query included,
    the #rc= fragment left out, as Twilio does)."""
    signed = url.split("#", 1)[0]
    parts = urlsplit(signed)
    signature = RequestValidator(AUTH_TOKEN).compute_signature(signed, params)
    return host.request(
        "POST", parts.path + (f"?{parts.query}" if parts.query else ""),
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "X-Twilio-Signature": signature},
        body=urlencode(params), base_url=PUBLIC,
    )


def call_event(sid: str, status: str, sequence: int) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": ACCOUNT_SID, "From": TWILIO_NUMBER, "To": TO,
            "CallStatus": status, "SequenceNumber": str(sequence),
            "CallbackSource": "call-progress-events", "ApiVersion": "2010-04-01"}


def traceparent_of(span: Any) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


# --- a call, its spans and its callbacks --------------------------------------------------------


def test_make_call_spans_continue_the_host_trace_and_name_the_sid(worker_host, calls, captured):
    answer = place_call(worker_host, traceparent=HOST_PARENT)
    sid = answer["sid"]

    [invocation] = captured.named("make_call")
    assert f"{invocation.context.trace_id:032x}" == HOST_TRACE  # the host's trace, continued
    assert invocation.parent is not None and invocation.parent.is_remote
    assert invocation.kind.name == "SERVER"
    attributes = dict(invocation.attributes)
    assert attributes[names.FUNCTION] == "make_call"
    assert attributes[names.HTTP_STATUS] == 201
    assert attributes[names.HTTP_METHOD] == "POST"
    assert attributes[names.URL_PATH] == "/api/make_call"
    assert attributes[names.CALL_SID] == sid
    assert attributes[names.INVOCATION_ID]

    [rest] = captured.named("Twilio POST Calls")
    assert rest.kind.name == "CLIENT"
    assert rest.parent.span_id == invocation.context.span_id
    assert {k: rest.attributes[k] for k in (names.RESOURCE, names.HTTP_STATUS, names.CALL_SID,
                                             names.HTTP_METHOD, names.TWILIO_RETRY)} == {
        names.RESOURCE: "Calls", names.HTTP_STATUS: 201, names.CALL_SID: sid,
        names.HTTP_METHOD: "POST", names.TWILIO_RETRY: False}

    # The record's writes: the Azure SDK's own spans, in the same trace.
    storage = [s for s in captured.spans() if s.kind.name == "CLIENT" and s is not rest]
    assert storage, [s.name for s in captured.spans()]
    assert all(s.context.trace_id == invocation.context.trace_id for s in storage)

    assert captured.metrics()[names.CREATES] == [
        ({names.RESOURCE: "Calls", names.FUNCTION: "make_call"}, 1)]

    # The record keeps the trace that created it.
    record = worker_host.request("GET", f"/api/calls/{sid}", base_url=PUBLIC).json()
    assert record["created_traceparent"] == traceparent_of(invocation)

    # The status callback URL carries the create's traceparent (signed by Twilio with the rest).
    callback_url = calls.requests[0].data["StatusCallback"]
    query = dict(p.split("=", 1) for p in urlsplit(callback_url).query.split("&"))
    assert query[names.CALLBACK_TRACE_PARAM] == traceparent_of(invocation)


@pytest.mark.parametrize("path", ["/api/calls/+14155550123", "/api/calls/%2B14155550123"])
def test_a_number_in_the_requested_path_is_not_exported_in_full(worker_host, captured, path):
    """The invocation span keeps the path the caller asked for, and a route may hold a phone
    number (/api/optouts/{person}): it is redacted like every other number."""
    worker_host.request("GET", path, base_url=PUBLIC)

    [span] = captured.named("calls")
    exported = span.attributes[names.URL_PATH]
    assert "14155550123" not in exported and exported.startswith("/api/calls/"), exported


def test_the_lookup_after_an_unknown_outcome_is_marked_a_retry(
    worker_host, calls, captured, app_settings, monkeypatch
):
    """A create whose answer came too late is looked up when the key is tried again: that
    request repeats the earlier attempt, and its span says so (`twilio.retry`); the first
    create's does not."""
    from shared.records import idempotency

    app_settings.setenv("TWILIO_HTTP_TIMEOUT", "0.2")
    headers = {"Content-Type": "application/json", "Idempotency-Key": f"retry-{time.time_ns()}"}

    # A number and a SID no other test uses: the lookup must find this call, and one owned by
    # no other key (the fixture's SIDs start afresh in each test, and records are kept).
    body = json.dumps({"to": "+14155550188"})
    sid = f"CA{time.time_ns():032x}"
    calls.created_call_json = lambda req: {**default_created_call(req), "sid": sid}

    def make_call() -> int:
        return worker_host.request("POST", "/api/make_call", headers=headers, body=body,
                                   base_url=PUBLIC).status

    calls.delay_after_create = 0.5  # Twilio made it, but its answer came too late
    assert make_call() == 504
    calls.delay_after_create = 0
    monkeypatch.setattr(idempotency, "IN_FLIGHT", datetime.timedelta(0))
    assert make_call() == 201  # found at Twilio: its answer, not a second call

    [create] = captured.named("Twilio POST Calls")
    [lookup] = captured.named("Twilio GET Calls")
    assert create.attributes[names.TWILIO_RETRY] is False
    assert lookup.attributes[names.TWILIO_RETRY] is True


def test_status_callbacks_link_to_the_span_that_created_the_call(worker_host, calls, captured):
    sid = place_call(worker_host)["sid"]
    [create] = captured.named("make_call")
    callback_url = calls.requests[0].data["StatusCallback"]
    captured.exporter.clear()

    for sequence, status in enumerate(("initiated", "ringing", "completed")):
        assert status_callback(worker_host, callback_url,
                               call_event(sid, status, sequence)).status == 204

    spans = captured.named("call_status")
    assert len(spans) == 3
    for span in spans:
        assert span.attributes[names.CALL_SID] == sid
        assert span.attributes[names.CREATED_TRACE] == traceparent_of(create)
        [link] = span.links
        assert (link.context.trace_id, link.context.span_id) == (
            create.context.trace_id, create.context.span_id)
        assert span.attributes[names.HTTP_STATUS] == 204


def test_a_forged_traceparent_is_refused_with_the_signature(worker_host, calls, captured):
    """The traceparent counts only under a valid signature: a callback URL whose query was
    changed after Twilio signed it is refused, and its span links to nothing."""
    sid = place_call(worker_host)["sid"]
    callback_url = calls.requests[0].data["StatusCallback"].split("#", 1)[0]
    params = call_event(sid, "ringing", 1)
    signature = RequestValidator(AUTH_TOKEN).compute_signature(callback_url, params)
    forged = callback_url.replace("-01", "-00")
    parts = urlsplit(forged)
    captured.exporter.clear()
    response = worker_host.request(
        "POST", f"{parts.path}?{parts.query}", base_url=PUBLIC, body=urlencode(params),
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "X-Twilio-Signature": signature})
    assert response.status == 403
    [span] = captured.named("call_status")
    assert not span.links and names.CREATED_TRACE not in span.attributes
    assert captured.metrics()[names.REFUSALS] == [
        ({names.FUNCTION: "call_status", names.REFUSAL_REASON: "signature"}, 1)]


@pytest.mark.parametrize("carried", [f"00-{'0' * 32}-b7ad6b7169203331-01",
                                     f"00-{HOST_TRACE}-{'0' * 16}-01", "ff-" + HOST_PARENT[3:]],
                         ids=["zero-trace-id", "zero-span-id", "version-ff"])
def test_a_callback_url_traceparent_that_names_no_span_links_to_nothing(
    worker_host, calls, captured, carried
):
    """A status callback URL (signed by Twilio as given) whose traceparent names no span, as
    W3C reads it: the callback is kept, and its span has no link and no created trace."""
    sid = place_call(worker_host)["sid"]
    callback_url = calls.requests[0].data["StatusCallback"]
    parts = urlsplit(callback_url)
    query = "&".join(p for p in parts.query.split("&")
                     if not p.startswith(f"{names.CALLBACK_TRACE_PARAM}="))
    url = f"{parts.scheme}://{parts.netloc}{parts.path}?{query}&traceparent={carried}"
    captured.exporter.clear()

    assert status_callback(worker_host, url, call_event(sid, "ringing", 1)).status == 204

    [span] = captured.named("call_status")
    assert span.attributes[names.CALL_SID] == sid
    assert not span.links and names.CREATED_TRACE not in span.attributes


def test_a_sender_the_app_may_not_use_is_counted_as_its_own_reason(
    worker_host, outbound, captured
):
    """app.refusals by reason: a `from` that is not one of the app's numbers is refused (403)
    as policy-from, not as the destination policy the same status also answers."""
    response = post_json(worker_host, "/api/send_sms",
                         {"to": TO, "body": MESSAGE, "from": "+14155550177"})

    assert response.status == 403, response.body
    assert captured.metrics()[names.REFUSALS] == [
        ({names.FUNCTION: "send_sms", names.REFUSAL_REASON: "policy-from"}, 1)]
    assert outbound.requests == []


def test_a_refused_call_and_twilio_errors_are_counted(worker_host, calls, captured):
    response = worker_host.request("POST", "/api/make_call", base_url=PUBLIC,
                                   headers={"Content-Type": "application/json"},
                                   body=json.dumps({"to": "+19005550123"}))  # premium rate
    assert response.status == 403
    calls.error(429, 20429, "Too Many Requests")
    assert worker_host.request("POST", "/api/make_call", base_url=PUBLIC,
                               headers={"Content-Type": "application/json"},
                               body=json.dumps({"to": TO})).status == 503

    metrics = captured.metrics()
    assert metrics[names.REFUSALS] == [
        ({names.FUNCTION: "make_call", names.REFUSAL_REASON: "policy-destination"}, 1)]
    assert metrics[names.TWILIO_ERRORS] == [
        ({names.RESOURCE: "Calls", names.HTTP_STATUS: 429, names.TWILIO_ERROR_CODE: "20429"}, 1)]
    assert metrics[names.RATE_LIMITED] == [({names.RESOURCE: "Calls"}, 1)]
    [rest] = captured.named("Twilio POST Calls")
    assert rest.attributes[names.TWILIO_ERROR_CODE] == "20429"
    assert rest.status.status_code.name == "ERROR"


def test_a_stop_is_counted_and_no_export_carries_a_number_a_body_or_a_secret(
    worker_host, calls, captured, logs, app_settings
):
    """A call with a message, its callbacks, an inbound STOP (its opt-out row is keyed by the
    person's number, which the Azure SDK puts in the span's URL): nothing exported holds a
    full phone number, the message or the text's body, or a secret."""
    app_settings.setenv("TWILIO_API_KEY", "SK" + "b" * 32)
    app_settings.setenv("TWILIO_API_SECRET", SECRETS[2])
    sid = place_call(worker_host)["sid"]
    status_callback(worker_host, calls.requests[0].data["StatusCallback"],
                    call_event(sid, "completed", 3))
    person = "+14155550177"
    stop = {"MessageSid": "SM" + "7" * 32, "AccountSid": ACCOUNT_SID, "From": person,
            "To": TWILIO_NUMBER, "Body": "Stop", "NumMedia": "0"}
    hook = signed_form_request(f"{PUBLIC}/api/sms_url", stop)
    assert worker_host.request("POST", "/api/sms_url", headers=dict(hook.headers),
                               body=hook.get_body(), base_url=PUBLIC).status == 200

    metrics = captured.metrics()
    assert ({names.OPTOUT_CHANGE: "opted-out", names.OPTOUT_SOURCE: "sms_url"}, 1) in metrics[
        names.OPT_OUTS]
    spans = captured.spans()
    # The opt-out row's URL, as the Azure SDK traced it, with both numbers redacted.
    assert any("RowKey='%2B1415*****77'" in str(s.attributes.get("url.full")) for s in spans)
    exported = json.dumps([
        [s.name, dict(s.attributes), [[e.name, dict(e.attributes)] for e in s.events],
         [dict(link.attributes) for link in s.links]] for s in spans
    ] + [[name, points] for name, points in metrics.items()], default=str)
    forbidden = [TO, person, TWILIO_NUMBER, MESSAGE, AUTH_TOKEN, *SECRETS]
    encoded = [value.replace("+", "%2B") for value in (TO, person, TWILIO_NUMBER)]
    assert [v for v in forbidden + encoded if v in exported] == []
    log_text = "\n".join(r.getMessage() for r in logs.records)
    assert [v for v in forbidden if v in log_text] == []


def test_a_failed_invocation_records_the_type_not_the_message(worker_host, captured):

    from shared.telemetry import runtime

    async def failing(req: Any) -> None:
        raise ValueError("+14155550123 said something private")

    failing.__module__ = "failing_function"
    wrapped = telemetry.traced(failing)
    with pytest.raises(ValueError):
        run_app(wrapped(None))
    [span] = captured.named("failing_function")
    assert span.attributes[names.ERROR_TYPE] == "ValueError"
    assert span.status.status_code.name == "ERROR"
    assert "+1415" not in str(span.status.description) and not span.events
    assert runtime.scrub("a=%2B14155550123&b=+14155550124") == "a=%2B1415*****23&b=+1415*****24"


def test_a_library_spans_error_text_is_scrubbed_of_numbers(captured):
    """The Azure SDKs set a failed request's span status to the error's text, which quotes the
    entity's keys (an opt-out's are the sender's and the person's numbers)."""
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    tracer = trace.get_tracer("azure.data.tables")  # a library's scope, not the app's
    with tracer.start_as_current_span("TableClient.get_entity") as span:
        span.set_status(Status(StatusCode.ERROR, "AuthenticationFailed: TwilioOptOuts("
                               "PartitionKey='%2B14155550160',RowKey='%2B14155550123')"))

    [ended] = captured.named("TableClient.get_entity")
    assert ended.status.description == ("AuthenticationFailed: TwilioOptOuts(PartitionKey="
                                        "'%2B1415*****60',RowKey='%2B1415*****23')")


# --- broadcasts: the helpers shared.broadcasts calls --------------------------------------------


def test_broadcast_helpers_emit_their_spans_and_metrics(captured):

    producer = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"

    @telemetry.traced
    async def main(msg: Any) -> None:
        with telemetry.broadcast_message("bc-1", "sms", producer):
            telemetry.set_attributes({names.MESSAGE_SID: "SM" + "1" * 32})
        telemetry.count_broadcast_send("sent", "sms")
        telemetry.count_deferral("paced")
        telemetry.observe_queue_age(2.5)
        telemetry.count_poisoned(2)

    run_app(main(None))
    [message] = captured.named(names.BROADCAST_MESSAGE_SPAN)
    assert message.attributes[names.BROADCAST_ID] == "bc-1"
    assert message.attributes[names.KIND] == "sms"
    assert message.attributes[names.MESSAGE_SID] == "SM" + "1" * 32
    assert message.attributes[names.LINKED_TRACE] == producer
    assert f"{message.links[0].context.trace_id:032x}" == "a" * 32
    metrics = captured.metrics()
    assert metrics[names.BROADCAST_SENDS] == [
        ({names.BROADCAST_OUTCOME: "sent", names.KIND: "sms"}, 1)]
    assert metrics[names.DEFERRALS] == [({names.DEFER_REASON: "paced"}, 1)]
    assert metrics[names.QUEUE_AGE] == [({}, 1)]
    assert metrics[names.POISONED] == [({}, 2)]


def test_a_broadcast_traces_each_send_to_its_request_and_each_callback_to_its_send(
    worker_host, texting_storage, twilio_api, app_settings, captured
):
    """The request that starts a broadcast puts its traceparent in the queue message; each
    recipient's send is a span with the broadcast's id, linked to that request, with the
    Twilio create under it; the text's status callbacks link to the send. So one search for the
    broadcast id, or for the SID, finds the request, every send and every callback."""

    from test_broadcasts import drain, queue_message

    import broadcast_send

    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    numbers = ["+14155550161", "+14155550162"]
    answer = worker_host.request(
        "POST", "/api/broadcasts", headers={"Content-Type": "application/json"},
        body=json.dumps({"kind": "sms", "to": numbers, "body": "Open late"}), base_url=PUBLIC)
    assert answer.status == 202, answer.body
    [request] = captured.named("broadcasts")
    [chunk] = drain(texting_storage, answer.json()["id"])
    assert chunk["traceparent"] == traceparent_of(request)

    run_app(broadcast_send.main(queue_message(chunk)))

    [invocation] = captured.named("broadcast_send")
    sends = captured.named(names.BROADCAST_MESSAGE_SPAN)
    assert len(sends) == 2
    for send in sends:
        assert send.parent.span_id == invocation.context.span_id
        assert send.attributes[names.BROADCAST_ID] == answer.json()["id"]
        [link] = send.links
        assert link.context.span_id == request.context.span_id
    creates = captured.named("Twilio POST Messages")
    assert sorted(c.parent.span_id for c in creates) == sorted(s.context.span_id for s in sends)
    metrics = captured.metrics()
    assert metrics[names.BROADCAST_SENDS] == [
        ({names.BROADCAST_OUTCOME: "sent", names.KIND: "sms"}, 2)]
    assert names.QUEUE_AGE in metrics

    # The first text's delivered callback: its URL (the broadcast's id and its send's
    # traceparent, signed by Twilio) links it to the send that created it.
    request_made = twilio_api.creates[0].data
    url = request_made["StatusCallback"]
    query = dict(part.split("=", 1) for part in urlsplit(url).query.split("&"))
    assert query["broadcast"] == answer.json()["id"]
    [send] = [s for s in sends if traceparent_of(s) == query[names.CALLBACK_TRACE_PARAM]]
    [create] = [c for c in creates if c.parent.span_id == send.context.span_id]
    sid = create.attributes[names.MESSAGE_SID]
    captured.exporter.clear()
    params = {"MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": TWILIO_NUMBER,
              "To": request_made["To"], "MessageStatus": "delivered", "ApiVersion": "2010-04-01"}
    assert status_callback(worker_host, url, params).status == 204
    [callback] = captured.named("message_status")
    assert callback.attributes[names.MESSAGE_SID] == sid
    [link] = callback.links
    assert link.context.span_id == send.context.span_id


# --- what the alert rules and the workbook read, through the functions that emit it ---------------


@pytest.fixture
def outbound(twilio_api, texting_storage, app_settings):
    """send_sms, make_call and broadcasts as on Azure: Azurite with no opt-out left by an earlier
    test, the Twilio double (a SID of its own for every create)."""
    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    return twilio_api


def post_json(host: WorkerHost, path: str, body: dict[str, Any],
              **headers: str) -> HostResponse:
    return host.request("POST", path, headers={"Content-Type": "application/json", **headers},
                        body=json.dumps(body), base_url=PUBLIC)


def start_broadcast(host: WorkerHost, azurite: Any, numbers: list[str]) -> tuple[str, dict]:
    """A text broadcast accepted by POST /api/broadcasts: its id and its one chunk, taken off
    the queue as the host takes it before handing it to broadcast_send."""
    from test_broadcasts import drain

    answer = post_json(host, "/api/broadcasts", {"kind": "sms", "to": numbers, "body": "Open late"})
    assert answer.status == 202, answer.body
    broadcast_id = answer.json()["id"]
    [chunk] = drain(azurite, broadcast_id)
    return broadcast_id, chunk


def queue_message(body: dict[str, Any], dequeue_count: int = 1) -> QueueMessageData:
    """A broadcast-sends message as the queue listener hands it to the worker."""
    return QueueMessageData(id=f"msg-{uuid.uuid4().hex[:12]}", body=json.dumps(body).encode(),
                            dequeue_count=dequeue_count,
                            insertion_time=datetime.datetime.now(datetime.UTC))


@contextlib.contextmanager
def refusing_storage() -> Iterator[str]:
    """A storage endpoint that refuses every connection (a port bound, never listened on, held
    until the block ends so nothing else takes it): storage unreachable."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}/{AZURITE_ACCOUNT}"


@contextlib.contextmanager
def busy_storage(status: int) -> Iterator[str]:
    """A storage endpoint that answers every request `status` with storage's ServerBusy error,
    as Azure Storage answers a throttled account."""
    error = json.dumps({"odata.error": {"code": "ServerBusy", "message": {
        "lang": "en-US", "value": "The server is busy."}}}).encode()

    class Busy(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", "application/json;odata=minimalmetadata")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_MERGE = answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{AZURITE_ACCOUNT}"
    finally:
        server.shutdown()
        server.server_close()
        serving.join()


@pytest.mark.parametrize(
    ("service", "status"), [("table", 0), ("table", 503), ("queue", 0), ("queue", 503)],
    ids=["table-unreachable", "table-503", "queue-unreachable", "queue-503"])
def test_storage_failing_a_request_is_counted_by_service_and_status(
    worker_host, outbound, texting_storage, app_settings, captured, monkeypatch, service, status
):
    """storage.unavailable, which the storage alert sums by service and status: the table
    endpoint unreachable (status 0: no answer came) or answering 503 while GET /api/calls reads
    the records (503 to the caller); the queue endpoint unreachable while POST /api/broadcasts
    queues its chunk (its rows are in Azurite's tables: 503, nothing queued)."""
    azurite = texting_storage
    with refusing_storage() if status == 0 else busy_storage(status) as broken:
        app_settings.setenv("AzureWebJobsStorage",
                            azurite.connection_string.replace(azurite.endpoint(service), broken))
        if service == "table":
            response = worker_host.request("GET", "/api/calls", base_url=PUBLIC)
        else:
            response = post_json(worker_host, "/api/broadcasts",
                                 {"kind": "sms", "to": ["+14155550184"], "body": "Open late"})

    assert response.status == 503, response.body
    assert captured.metrics()[names.STORAGE_UNAVAILABLE] == [
        ({names.STORAGE_SERVICE: service, names.HTTP_STATUS: status}, 1)]


def test_a_poisoned_broadcast_message_counts_its_recipients(
    worker_host, outbound, texting_storage, captured
):
    """broadcast.poisoned, which the poison-queue alert fires on: a chunk that exhausted its
    tries lands on broadcast-sends-poison, and broadcast_poison, invoked by the host for it,
    records its recipients failed and counts them."""
    numbers = ["+14155550181", "+14155550182"]
    broadcast_id, chunk = start_broadcast(worker_host, texting_storage, numbers)

    result = worker_host.invoke_queue("broadcast_poison", queue_message(chunk, dequeue_count=5),
                                      queue_name="broadcast-sends-poison")

    assert result.succeeded, result.error
    assert captured.metrics()[names.POISONED] == [({}, 2)]
    [invocation] = captured.named("broadcast_poison")
    assert invocation.attributes[names.TRIGGER] == "pubsub"
    shown = worker_host.request("GET", f"/api/broadcasts/{broadcast_id}", base_url=PUBLIC).json()
    assert shown["counts"]["failed"] == 2
    assert outbound.requests == []


def test_a_poisoned_message_counts_only_the_recipients_it_gave_up_on(
    worker_host, outbound, texting_storage, captured, monkeypatch
):
    """A chunk whose first recipient was sent before its message failed for good (the second
    got Twilio's 429): broadcast_poison leaves the sent one as it is and counts only the one it
    marked failed."""
    from test_broadcasts import drain

    from shared.broadcasts import sending

    monkeypatch.setattr(sending, "_wait", lambda response: 0.0)  # the deferred copy at once
    numbers = ["+14155550163", "+14155550164"]
    broadcast_id, chunk = start_broadcast(worker_host, texting_storage, numbers)
    outbound.behaviours.append(outbound._created)  # the first: created as Twilio does
    outbound.error(429, 20429, "Too Many Requests")  # the second: put off
    assert worker_host.invoke_queue("broadcast_send", queue_message(chunk)).succeeded
    drain(texting_storage, broadcast_id)  # the second's own message: not this test's
    captured.metrics()  # the send's metrics are not this test's

    result = worker_host.invoke_queue("broadcast_poison", queue_message(chunk, dequeue_count=5),
                                      queue_name="broadcast-sends-poison")

    assert result.succeeded, result.error
    assert captured.metrics()[names.POISONED] == [({}, 1)]
    shown = worker_host.request("GET", f"/api/broadcasts/{broadcast_id}", base_url=PUBLIC).json()
    assert (shown["counts"]["sent"], shown["counts"]["failed"]) == (1, 1)
    assert len(outbound.creates) == 2


def test_a_poisoned_message_leaves_a_recipient_that_failed_on_its_own(
    worker_host, outbound, texting_storage, captured
):
    """A recipient Twilio refused (21211: failed, with Twilio's error) in a chunk that then
    failed for good: broadcast_poison leaves it as it is and counts nothing."""
    numbers = ["+14155550165"]
    broadcast_id, chunk = start_broadcast(worker_host, texting_storage, numbers)
    outbound.error(400, 21211, "The 'To' number is not a valid phone number.")
    assert worker_host.invoke_queue("broadcast_send", queue_message(chunk)).succeeded
    captured.metrics()  # the send's metrics are not this test's

    result = worker_host.invoke_queue("broadcast_poison", queue_message(chunk, dequeue_count=5),
                                      queue_name="broadcast-sends-poison")

    assert result.succeeded, result.error
    assert names.POISONED not in captured.metrics()
    shown = worker_host.request("GET", f"/api/broadcasts/{broadcast_id}", base_url=PUBLIC).json()
    [recipient] = shown["recipients"]
    assert recipient["state"] == "failed" and recipient["error"].startswith("21211"), recipient


@pytest.mark.parametrize(
    ("twilio_status", "code", "reasons", "creates"),
    [(429, 20429, ["rate-limited", "rate-limited"], 2),
     (500, 20500, ["unknown-outcome", "in-flight"], 1),
     (None, None, ["unavailable", "unavailable"], 2)],
    ids=["twilio-429", "twilio-500", "twilio-unreachable"])
def test_a_broadcast_send_put_off_is_counted_with_its_reason(
    worker_host, outbound, texting_storage, captured, monkeypatch, twilio_status, code, reasons,
    creates
):
    """broadcast.deferrals by broadcast.defer_reason, which the workbook charts beside Twilio's
    429s and the stuck-broadcast alert counts as work. broadcast_send, invoked by the host for a
    chunk, gets Twilio's 429 (or a 500: the outcome unknown; or no connection to Twilio at all,
    which is not Twilio's rate limit) for its recipient, puts the recipient back on the queue on
    its own and counts why; then for that recipient's message, again (after a 429 or no
    connection Twilio is asked again; after a 500 the key is still in flight until its outcome
    can be looked up). Nothing is settled."""
    from test_broadcasts import drain
    from test_never_twice_never_lost import refused_to_connect

    from shared.broadcasts import sending

    # The recipient's copy visible at once instead of after its wait, so the test takes it back
    # off the queue (and no later test finds it there).
    monkeypatch.setattr(sending, "_wait", lambda response: 0.0)
    to = "+14155550185"
    broadcast_id, message = start_broadcast(worker_host, texting_storage, [to])

    for deferrals, reason in enumerate(reasons, start=1):
        if twilio_status is None:
            outbound.fail(refused_to_connect())
        else:
            outbound.error(twilio_status, code, "Too Many Requests" if code == 20429 else "Error")
        result = worker_host.invoke_queue("broadcast_send", queue_message(message))
        assert result.succeeded, result.error
        metrics = captured.metrics()
        assert metrics[names.DEFERRALS] == [({names.DEFER_REASON: reason}, 1)]
        assert names.BROADCAST_SENDS not in metrics
        [message] = drain(texting_storage, broadcast_id)
        assert (message["to"], message["deferrals"]) == (to, deferrals)
    assert len(outbound.creates) == creates


@pytest.fixture
def example_flow(app_settings, monkeypatch) -> Iterator[None]:
    """The example call flow (flows/calls.example.json) in office hours, every flow checked in
    full, as tests/test_call_flows.py walks it."""
    from test_call_flows import OPEN

    from shared.callflows import loading, walk
    from shared.common import stamp

    app_settings.setenv("CALL_FLOW", "flows/calls.example.json")
    monkeypatch.setattr(walk, "_now", OPEN.timestamp)
    monkeypatch.setattr(stamp, "SUFFIX", ".no-stamps-in-these-tests")
    loading.forget()
    yield
    loading.forget()


def test_how_each_dial_ended_is_counted(worker_host, example_flow, captured):
    """callflow.outcomes, which the workbook charts, through the signed call-flow webhooks: a
    dial someone answered counts dial-answered; one nobody answered counts dial-unanswered
    once, when its last number did not answer (the first no-answer only rings the next) and
    the caller goes on to the voicemail."""
    from test_call_flows import dial_ends, press, start, verbs

    answered = dial_ends(worker_host, press(worker_host, start(worker_host), "1"), "completed")
    second = dial_ends(worker_host, press(worker_host, start(worker_host), "1"), "no-answer")

    assert verbs(answered) == ["Hangup"] and verbs(second) == ["Dial"]
    assert captured.metrics()[names.FLOW_OUTCOMES] == [
        ({names.FLOW_OUTCOME: "dial-answered"}, 1)]
    last = dial_ends(worker_host, second, "no-answer")
    assert verbs(last) == ["Say", "Record", "Redirect"]
    assert captured.metrics()[names.FLOW_OUTCOMES] == [
        ({names.FLOW_OUTCOME: "dial-unanswered"}, 1)]


def test_a_refused_flow_counts_each_call_it_turned_away_as_a_webhook_failure(
    worker_host, example_flow, app_settings, captured
):
    """The flow's problems are logged once per process, and each call answered 200 with the
    apology: only app.webhook_failures, which the failure rate alert counts, tells of each."""
    from test_call_flows import call_params, post, start, verbs

    app_settings.setenv("CALL_ALLOWED_COUNTRIES", "CA")  # the example rings US numbers

    assert verbs(start(worker_host)) == verbs(start(worker_host)) == ["Say", "Hangup"]
    resumed = post(worker_host, f"{PUBLIC}/api/call_flow?step=welcome&after=menu",
                   call_params(Digits="1"))
    assert resumed.status == 200
    assert captured.metrics()[names.WEBHOOK_FAILURES] == [
        ({names.FUNCTION: "voice_url", names.FAILURE_REASON: "call-flow"}, 2),
        ({names.FUNCTION: "call_flow", names.FAILURE_REASON: "call-flow"}, 1)]


def test_a_malformed_setting_counts_each_safe_answer_as_a_webhook_failure(
    worker_host, app_settings, captured
):
    from test_call_flows import call_params, post

    app_settings.setenv("PUBLIC_BASE_URL", PUBLIC)
    app_settings.setenv("VOICE_NAME", "Polly Joanna<b>")

    assert post(worker_host, f"{PUBLIC}/api/voice_url", call_params()).status == 200
    assert post(worker_host, f"{PUBLIC}/api/voice_url", call_params(), signed=False).status == 403
    metrics = captured.metrics()
    assert metrics[names.WEBHOOK_FAILURES] == [
        ({names.FUNCTION: "voice_url", names.FAILURE_REASON: "settings"}, 1)]
    assert metrics[names.REFUSALS] == [
        ({names.FUNCTION: "voice_url", names.REFUSAL_REASON: "signature"}, 1)]


def test_a_voicemail_is_counted_once_with_its_recording(
    worker_host, example_flow, outbound, captured
):
    """callflow.outcomes voicemail-taken: the flow's <Record> ends with Twilio's signed
    recording callback (the recording completed: counted), delivered again as Twilio retries
    it, then its transcription callback (the same voicemail: neither counted again)."""
    from test_call_flows import call_params, post, press, recording_callback, start

    url = recording_callback(press(worker_host, start(worker_host), "2"),
                             "recordingStatusCallback")
    # A call of its own: tests/test_call_flows.py reads its CALL_SID's record whole.
    recording, call = "RE" + uuid.uuid4().hex, "CA" + uuid.uuid4().hex
    completed = call_params(CallSid=call, RecordingSid=recording, RecordingStatus="completed",
                            RecordingDuration="12")
    transcribed = call_params(CallSid=call, RecordingSid=recording,
                              TranscriptionSid="TR" + uuid.uuid4().hex,
                              TranscriptionStatus="completed", TranscriptionText="Call me.")

    assert post(worker_host, url, completed).status == 204
    assert captured.metrics()[names.FLOW_OUTCOMES] == [
        ({names.FLOW_OUTCOME: "voicemail-taken"}, 1)]
    assert post(worker_host, url, completed).status == 204  # Twilio's retry
    assert post(worker_host, url, transcribed).status == 204
    assert names.FLOW_OUTCOMES not in captured.metrics()


def test_a_voicemail_whose_first_callback_failed_half_way_is_counted_on_the_retry(
    worker_host, example_flow, outbound, captured, monkeypatch
):
    """The first recording callback files the voicemail's lookup row, then storage fails
    before its index row (503: Twilio tries again); the retry finishes the filing, and the
    voicemail is counted then, once."""
    from test_call_flows import call_params, post, press, recording_callback, start

    from shared.records import storage, store

    url = recording_callback(press(worker_host, start(worker_host), "2"),
                             "recordingStatusCallback")
    recording, call = "RE" + uuid.uuid4().hex, "CA" + uuid.uuid4().hex
    completed = call_params(CallSid=call, RecordingSid=recording, RecordingStatus="completed",
                            RecordingDuration="12")
    on_table, index_writes = storage.on_table, []

    async def second_index_write_fails(name: str, operation: Any) -> Any:
        if name == store.INDEX_TABLE:
            index_writes.append(name)
            if len(index_writes) == 2:  # the lookup row went in; the index row does not
                raise storage.StorageUnavailable("storage failed: ServiceUnavailable", 503)
        return await on_table(name, operation)

    monkeypatch.setattr(storage, "on_table", second_index_write_fails)
    assert post(worker_host, url, completed).status == 503
    assert names.FLOW_OUTCOMES not in captured.metrics()
    assert post(worker_host, url, completed).status == 204  # Twilio's retry

    assert captured.metrics()[names.FLOW_OUTCOMES] == [
        ({names.FLOW_OUTCOME: "voicemail-taken"}, 1)]


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/make_call", {"to": "+14155550186", "message": MESSAGE}),
     ("/api/send_sms", {"to": "+14155550186", "body": MESSAGE})],
    ids=["make_call", "send_sms"])
def test_what_became_of_an_idempotency_key_is_on_each_requests_span(
    worker_host, outbound, captured, monkeypatch, path, body
):
    """idempotency.outcome, which docs/operations.md's search for a request shows: the first
    request with a key claims it; the same request again while the first is still at Twilio is
    refused in flight (409); once the first answered, again replays its answer. One create."""
    key = {"Idempotency-Key": f"telemetry-{uuid.uuid4()}"}
    arrived, release = threading.Event(), threading.Event()
    answer = outbound.request

    async def held(*args: Any, **kwargs: Any) -> Any:
        """Twilio answers the create only once the test lets it (`release`)."""
        arrived.set()
        while not release.is_set():
            await asyncio.sleep(0.01)
        return await answer(*args, **kwargs)

    monkeypatch.setattr(outbound, "request", held)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post_json, worker_host, path, body, **key)
        try:
            assert arrived.wait(10), "the first request never reached Twilio"
            in_flight = post_json(worker_host, path, body, **key)
        finally:
            release.set()  # never a first request left waiting on Twilio
        claimed = first.result(10)
    replayed = post_json(worker_host, path, body, **key)

    assert [in_flight.status, claimed.status, replayed.status] == [409, 201, 201]
    assert replayed.json()["sid"] == claimed.json()["sid"]
    spans = captured.named(path.rsplit("/", 1)[-1])
    assert [(s.attributes[names.HTTP_STATUS], s.attributes.get(names.IDEMPOTENCY_OUTCOME))
            for s in spans] == [(409, "in-flight"), (201, "claimed"), (201, "replayed")]
    assert len(outbound.creates) == 1


def test_twilios_21610_is_counted_as_an_opt_out_it_taught(worker_host, outbound, captured):
    """optouts.changes with source twilio-21610, which the workbook charts: Twilio refuses a
    text because the person opted out (a STOP the app never saw); send_sms keeps the opt-out
    and counts it. The next text is refused before Twilio, and changes nothing more."""
    text = {"to": "+14155550187", "body": MESSAGE}
    outbound.error(400, 21610, "Attempt to send to unsubscribed recipient")

    refused = post_json(worker_host, "/api/send_sms", text)

    assert refused.status == 422 and refused.json()["twilio_code"] == 21610
    assert captured.metrics()[names.OPT_OUTS] == [
        ({names.OPTOUT_CHANGE: "opted-out", names.OPTOUT_SOURCE: "twilio-21610"}, 1)]
    assert post_json(worker_host, "/api/send_sms", text).status == 422
    assert names.OPT_OUTS not in captured.metrics()
    assert len(outbound.requests) == 1  # the second never reached Twilio


def test_every_metric_name_is_one_of_names(captured):
    with pytest.raises(ValueError, match="METRICS"):
        telemetry.count("app.not_a_metric")


# --- off: the settings, and the cost --------------------------------------------------------------


def test_off_without_a_connection_string_and_nothing_is_emitted(app_settings):
    assert telemetry.enabled() is False
    assert telemetry.current_traceparent() is None
    assert telemetry.callback_query("?broadcast=b1") == "?broadcast=b1"
    app_settings.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "not a connection string")
    assert telemetry.enabled() is False  # malformed: logged once, off, never a failed request


def test_every_instrumentation_of_the_distro_but_the_azure_sdks_is_turned_off():
    """runtime turns the distro's library instrumentations off by name (each costs import time;
    the app's Twilio requests have spans of their own): a library the distro adds in a later
    version would be on, unnoticed, without this check against the distro's own list."""
    from azure.monitor.opentelemetry import _constants as distro

    from shared.telemetry import runtime

    assert set(runtime._UNUSED_INSTRUMENTATIONS) == (
        set(distro._ALL_SUPPORTED_INSTRUMENTED_LIBRARIES) - {distro._AZURE_SDK_INSTRUMENTATION_NAME})


def test_the_settings_are_validated_in_one_place():
    def load(env: dict[str, str]) -> tuple[str | None, str | None]:
        found = settings.load_telemetry_settings(env)
        return found.connection_string, found.entra_client_id

    key = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x/"
    assert load({"APPLICATIONINSIGHTS_CONNECTION_STRING": key}) == (key, None)
    client = "11111111-2222-3333-4444-555555555555"
    entra = f"ClientId={client};Authorization=AAD"
    assert load({"APPLICATIONINSIGHTS_CONNECTION_STRING": key,
                 "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": entra}) == (key, client)
    assert load({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD"}) == (None, "")
    from shared.common.settings import SettingsError

    for bad in ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "IngestionEndpoint=https://x/"},
                {"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=Key"},
                {"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=x;Authorization=AAD"}):
        with pytest.raises(SettingsError, match="APPLICATIONINSIGHTS_"):
            load(bad)


def test_telemetry_unset_adds_no_import_to_the_webhooks():
    """Every function folder loads, voice_url and sms_url answer, with telemetry unset: no
    OpenTelemetry, no Azure Monitor, no shared.telemetry.runtime in the process."""
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        for name in [n for n in os.environ if n.startswith(("TWILIO_", "PUBLIC_", "VOICE_",
                                                          "SMS_", "APPLICATIONINSIGHTS_"))]:
            del os.environ[name]
        import make_call, send_sms, voice_url, sms_url, call_status, message_status, calls
        import messages, voicemails, recordings, broadcasts, optouts, console, broadcast_send
        sys.path.insert(0, "tests")
        from conftest import signed_form_request, VOICE_PARAMS, AUTH_TOKEN
        os.environ["TWILIO_AUTH_TOKEN"] = AUTH_TOKEN
        req = signed_form_request("https://myapp.azurewebsites.net/api/voice_url", VOICE_PARAMS)
        assert asyncio.run(voice_url.main(req)).status_code == 200
        heavy = [m for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor",
                 "azure.core.tracing", "shared.telemetry.runtime"))]
        print(",".join(sorted(heavy)) or "none")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=telemetry_root(),
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["none"]


def telemetry_root() -> str:
    from devhost.pytest_plugin import APP_ROOT

    return str(APP_ROOT)


# The Azure Monitor exporter's network timeout (seconds): an export waiting on an ingestion
# endpoint that never answers holds its thread that long, never a request.
EXPORTER_TIMEOUT = 10.0


@pytest.mark.parametrize("endpoint", ["refusing", "silent"])
def test_on_with_an_unreachable_ingestion_endpoint_requests_do_not_wait(endpoint, tmp_path):
    """Configured from the settings as on Azure (the Azure Monitor distro), the ingestion
    endpoint answering nothing: refusing connections (port 9), or taking them and never
    answering (a socket of the test's that never replies). The first request pays the
    configuration, none waits on the exporter, and the invocation's span goes to Azure
    Monitor's exporter.

    The spans are exported every 50 ms (OTEL_BSP_SCHEDULE_DELAY; by default every 5 s, after
    the requests have ended), so exports run while the requests do; with the silent endpoint,
    the timed requests start once the exporter's request is on the socket, unanswered."""
    script = textwrap.dedent(
        """
        import asyncio, os, sys, time
        sys.path.insert(0, "tests")
        os.environ["APPLICATIONINSIGHTS_CONNECTION_STRING"] = (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint={sys.argv[1]};LiveEndpoint={sys.argv[1]}")
        from conftest import signed_form_request, VOICE_PARAMS, AUTH_TOKEN
        os.environ["TWILIO_AUTH_TOKEN"] = AUTH_TOKEN
        os.environ["WEBSITE_HOSTNAME"] = "myapp.azurewebsites.net"
        import voice_url
        req = signed_form_request("https://myapp.azurewebsites.net/api/voice_url", VOICE_PARAMS)

        def answer() -> float:
            started = time.monotonic()
            assert asyncio.run(voice_url.main(req)).status_code == 200
            return time.monotonic() - started

        first = answer()  # the configuration
        print("configured", flush=True)
        sys.stdin.readline()  # the test's go-ahead
        rest = []
        for _ in range(20):
            rest.append(answer())
            time.sleep(0.01)  # the exporter's thread gets its turns
        from opentelemetry import trace
        processors = trace.get_tracer_provider()._active_span_processor._span_processors
        print(round(first, 2), round(sum(rest), 2),
              *sorted(type(p).__name__ for p in processors), flush=True)
        os._exit(0)  # the exporter's retries at exit are not this test's
        """
    )
    # The exporter keeps what it could not send under the temporary directory: the test's.
    env = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "50", "TMPDIR": str(tmp_path)}
    with contextlib.ExitStack() as stack:
        silent = None
        if endpoint == "refusing":
            url = "http://127.0.0.1:9/"
        else:
            silent = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
            silent.settimeout(30)
            url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        process = stack.enter_context(subprocess.Popen(
            [sys.executable, "-c", script, url], cwd=telemetry_root(), env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        stack.callback(process.kill)  # a no-op once it has exited; then waited for
        watchdog = threading.Timer(60, process.kill)  # a hang fails the test, never the run
        watchdog.start()
        stack.callback(watchdog.cancel)
        assert process.stdout is not None
        configured = process.stdout.readline()
        assert configured == "configured\n", (
            f"the first request did not answer within 60 s: {process.communicate()[1]}")
        if silent is not None:
            exporting, _ = silent.accept()  # the exporter's request: read, never answered
            stack.enter_context(exporting)
            exporting.settimeout(30)
            assert exporting.recv(5) == b"POST "
        output, errors = process.communicate("go\n", timeout=60)
    assert process.returncode == 0, errors
    first, rest, *processors = output.split()
    assert float(first) < 10
    assert float(rest) < EXPORTER_TIMEOUT / 2  # 20 requests; one waiting on the export: 10 s
    assert {"BatchSpanProcessor", "Scrubber"} <= set(processors)
