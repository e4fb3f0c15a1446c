"""The OpenTelemetry half of shared.telemetry, imported only once telemetry is on (a connection
string is set, or a test installed providers): the Azure Monitor distro's configuration, the
spans (invocations, Twilio REST requests, broadcast messages), the metric instruments, and the
scrubbing of what leaves the process.

Configured once per process, on first use: `configure_azure_monitor` with the app's choices
(every span kept: a SID must be findable; no live metrics, performance counters or library
instrumentations but the Azure SDKs'; the worker's log lines are not exported again, since the
Functions host already sends them to Application Insights under the invocation's operation id,
which these spans share). Exporters work on their own threads: a request never waits on them.
Anything that goes wrong here is logged and telemetry stays off; a request never fails for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.common import logs, redact
from shared.telemetry import names

logger = logs.get_logger(__name__)

SCOPE = "twilio-azure-functions"  # the instrumentation scope of every span and metric here

# The function folder whose invocation runs (creates are counted by it), and whether its
# Twilio requests repeat an earlier attempt (shared.telemetry.mark_retry).
FUNCTION: ContextVar[str] = ContextVar("telemetry_function", default="-")
RETRY: ContextVar[bool] = ContextVar("telemetry_retry", default=False)

# The distro's library instrumentations: all off (the app makes no requests through them, and
# each costs import time) but the Azure SDKs' own tracing (azure_sdk), which stays on.
_UNUSED_INSTRUMENTATIONS = ("django", "fastapi", "flask", "httpx", "httpx2", "psycopg2",
                            "requests", "urllib", "urllib3")

_lock = threading.Lock()
_state = "unconfigured"  # configured, failed, or test (use_providers)
_tracer: Any = None
_meter: Any = None
_instruments: dict[str, Any] = {}


def use_providers(tracer_provider: Any, meter_provider: Any) -> None:
    """Tests: spans and metrics go to these providers (None: back to unconfigured). The Azure
    SDKs trace through the global provider: a test sets that one too."""
    global _state, _tracer, _meter
    with _lock:
        _instruments.clear()
        if tracer_provider is None:
            _state, _tracer, _meter = "unconfigured", None, None
            return
        _state = "test"
        _tracer = tracer_provider.get_tracer(SCOPE)
        _meter = meter_provider.get_meter(SCOPE)
        _trace_azure_sdks()


def _ready() -> bool:
    """Configure on first use; False when configuration failed (telemetry stays off)."""
    global _state
    if _state in ("configured", "test"):
        return True
    if _state == "failed":
        return False
    with _lock:
        if _state == "unconfigured":
            try:
                _configure()
                _state = "configured"
            except Exception as error:  # never a request's failure: logged, then off
                _state = "failed"
                logger.error("telemetry outcome=off reason=configuration failed: %s",
                             type(error).__name__)
    return _state in ("configured", "test")


def _configure() -> None:
    global _tracer, _meter
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry import metrics

    from shared.telemetry.settings import load_telemetry_settings

    settings = load_telemetry_settings()
    credential = None
    if settings.entra_client_id is not None:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=settings.entra_client_id or None)
    # The host sends the worker's log lines already; OTEL_LOGS_EXPORTER set to anything else by
    # the operator exports them from here too.
    os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
    configure_azure_monitor(
        connection_string=settings.connection_string,
        credential=credential,
        sampling_ratio=1.0,
        enable_live_metrics=False,
        enable_performance_counters=False,
        instrumentation_options={name: {"enabled": False} for name in _UNUSED_INSTRUMENTATIONS},
        span_processors=[Scrubber()],
    )
    _trace_azure_sdks()
    _tracer = trace.get_tracer(SCOPE)
    _meter = metrics.get_meter(SCOPE)


def _trace_azure_sdks() -> None:
    """The Azure SDKs (tables, queues, identity) trace each request as a client span of the
    running one, through OpenTelemetry (what the distro's azure_sdk instrumentation sets)."""
    from azure.core.settings import settings
    from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan

    settings.tracing_implementation = OpenTelemetrySpan


# ---- Scrubbing ---------------------------------------------------------------------------------

# What no exported span may carry in full: a phone number (shared.common.redact).
scrub = redact.phone_numbers_in


def _scrubbed(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The attributes with phone numbers redacted, or None when none had one."""
    changed = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, str) and (cleaned := scrub(value)) != value:
            changed[key] = cleaned
    return {**(attributes or {}), **changed} if changed else None


class Scrubber(SpanProcessor):
    """Redacts phone numbers from every ended span's attributes, events and status description
    (a library's error text: the Azure SDKs quote the entity's keys) before the exporter's
    processor (registered after this one) sees it. The app's own spans carry none;
    this is for what libraries record (the Azure SDKs put each request's URL on their spans).

    An ended span is read-only through the API: the processor replaces its attribute and event
    collections in place, on the one ReadableSpan every processor is handed in turn. The app's
    own spans (this module's scope) are passed over: they hold SIDs and tokens only (the one
    value a caller chooses, the request's path, is scrubbed when it is set), and scrubbing
    each would cost every request."""

    def on_end(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == SCOPE:
            return  # the app's own spans: SIDs, tokens and a scrubbed path, never a number
        attributes = _scrubbed(span.attributes)
        if attributes is not None:
            span._attributes = attributes  # type: ignore[assignment]
        events = []
        for event in span.events:
            cleaned = _scrubbed(event.attributes)
            events.append(event if cleaned is None
                          else Event(event.name, cleaned, event.timestamp))
        if any(new is not old for new, old in zip(events, span.events, strict=True)):
            span._events = tuple(events)  # type: ignore[assignment]
        said = span.status.description
        if said and (cleaned := scrub(said)) != said:
            span._status = Status(span.status.status_code, cleaned)  # type: ignore[assignment]


# ---- Spans -------------------------------------------------------------------------------------

# Traceparents (the host's, a record's, a callback URL's) are read and written by OpenTelemetry's
# W3C Trace Context propagator, through a one-field carrier.
_W3C = TraceContextTextMapPropagator()
_W3C_FIELD = "traceparent"
_SID = re.compile(r"([A-Z]{2})[0-9a-fA-F]{32}")
_SID_ATTRIBUTES = {"CA": names.CALL_SID, "SM": names.MESSAGE_SID, "MM": names.MESSAGE_SID,
                   "RE": names.RECORDING_SID}
_WEBHOOK_SIDS = (("CallSid", names.CALL_SID), ("MessageSid", names.MESSAGE_SID),
                 ("RecordingSid", names.RECORDING_SID))


def span_context(traceparent: str | None) -> SpanContext | None:
    """The remote span a W3C traceparent names, or None when it is not one (OpenTelemetry's
    W3C propagator reads it: a zero id, version ff or a malformed value names none)."""
    if not traceparent:
        return None
    carried = _W3C.extract({_W3C_FIELD: traceparent})
    found = trace.get_current_span(carried).get_span_context()
    return found if found.is_valid else None


def _host_context(context: Any) -> Context | None:
    """The Functions host's trace context for this invocation (what the worker hands in
    `context.trace_context`), as the parent of the invocation's span; None without a valid
    one. Its traceparent only: the tracestate is the caller's (any request to an anonymous
    webhook), and OpenTelemetry logs a WARNING for each it finds malformed."""
    trace_context = getattr(context, "trace_context", None)
    remote = span_context(getattr(trace_context, "trace_parent", None))
    if remote is None:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(remote), Context())


def _failed(span: Any, error: BaseException) -> None:
    """The span failed: the exception's type only (its message may hold a number or a body)."""
    span.set_attribute(names.ERROR_TYPE, type(error).__name__)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))


@contextlib.contextmanager
def invocation(function: str, trigger: str, given: Any, context: Any) -> Iterator[Any]:
    """The invocation's span (shared.telemetry.traced), current while the function runs: the
    span, or None when telemetry could not be configured. `given` is the trigger's argument."""
    if not _ready():
        yield None
        return
    attributes: dict[str, Any] = {names.FUNCTION: function, names.TRIGGER: trigger}
    invocation_id = getattr(context, "invocation_id", None)
    if invocation_id:
        attributes[names.INVOCATION_ID] = str(invocation_id)
    retry = False
    if isinstance(given, func.HttpRequest):
        attributes[names.HTTP_METHOD] = given.method
        # The caller's path: the app's routes may hold a number (/api/optouts/{person}).
        attributes[names.URL_PATH] = scrub(urlsplit(given.url).path)
    elif isinstance(given, func.QueueMessage):
        retry = (given.dequeue_count or 0) > 1
    kind = SpanKind.CONSUMER if trigger == "pubsub" else SpanKind.SERVER
    function_token, retry_token = FUNCTION.set(function), RETRY.set(retry)
    try:
        with _tracer.start_as_current_span(
            function, context=_host_context(context), kind=kind, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as error:
                _failed(span, error)
                raise
    finally:
        FUNCTION.reset(function_token)
        RETRY.reset(retry_token)


def finished(span: Any, result: Any) -> Any:
    """`result` (the function's return value), its HTTP status put on the invocation's span."""
    status = getattr(result, "status_code", None)
    if span is not None and isinstance(status, int):
        span.set_attribute(names.HTTP_STATUS, status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
    return result


def current_traceparent() -> str | None:
    if not _ready():
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)  # nothing when no valid span runs
    return carrier.get(_W3C_FIELD)


def set_attributes(attributes: Mapping[str, Any]) -> None:
    if _ready():
        trace.get_current_span().set_attributes(dict(attributes))


def note_webhook(param: Callable[[str], str | None], query: Mapping[str, str]) -> None:
    """shared.telemetry.note_webhook: the SIDs, and the link to the creating span."""
    if not _ready():
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    for name, attribute in _WEBHOOK_SIDS:
        value = param(name)
        if value and _SID.fullmatch(value):
            span.set_attribute(attribute, value)
    traceparent = query.get(names.CALLBACK_TRACE_PARAM)
    created = span_context(traceparent)
    if created is not None:
        span.add_link(created, {names.CREATED_TRACE: traceparent or ""})
        span.set_attribute(names.CREATED_TRACE, traceparent or "")


@contextlib.contextmanager
def broadcast_message(broadcast_id: str, kind: str, traceparent: str | None
                      ) -> Iterator[None]:
    if not _ready():
        yield
        return
    producer = span_context(traceparent)
    links = [Link(producer)] if producer is not None else []
    fields = {names.BROADCAST_ID: broadcast_id, names.KIND: kind}
    if producer is not None:
        fields[names.LINKED_TRACE] = traceparent
    with _tracer.start_as_current_span(
        names.BROADCAST_MESSAGE_SPAN, kind=SpanKind.INTERNAL, attributes=fields, links=links,
        record_exception=False, set_status_on_exception=False,
    ) as span:
        try:
            yield
        except BaseException as error:
            _failed(span, error)
            raise


# ---- Twilio's REST API -------------------------------------------------------------------------

_CREATES = frozenset({"Calls", "Messages"})


def twilio_resource(url: str) -> tuple[str, dict[str, str]]:
    """(the resource a Twilio REST URL names: Calls, Messages, Recordings...; the SIDs in its
    path as span attributes). Only the path is read: a list request's query holds numbers."""
    resource, sids = "-", {}
    for segment in urlsplit(url).path.split("/"):
        segment = segment.removesuffix(".json")
        sid = _SID.fullmatch(segment)
        if sid:
            attribute = _SID_ATTRIBUTES.get(sid.group(1))
            if attribute:
                sids[attribute] = segment
        elif segment and segment[0].isupper():
            resource = segment
    return resource, sids


def _answer(text: object) -> dict[str, Any]:
    try:
        parsed = json.loads(text) if isinstance(text, str | bytes) else None
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


async def twilio_request(send: Callable[..., Any], method: str, url: str, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Any:
    """`send(method, url, *args, **kwargs)` (the Twilio client's HTTP request) inside a client
    span: method, resource, SIDs, HTTP status, Twilio's error code, whether it is a retry; and
    the metrics: creates, Twilio errors by code, 429s. Never the query or the body."""
    if not _ready():
        return await send(method, url, *args, **kwargs)
    method = method.upper()
    resource, sids = twilio_resource(url)
    creating = method == "POST" and resource in _CREATES and not sids
    attributes: dict[str, Any] = {names.HTTP_METHOD: method, names.RESOURCE: resource,
                                  names.TWILIO_RETRY: RETRY.get(), **sids}
    host = urlsplit(url).hostname
    if host:
        attributes["server.address"] = host
    caller = trace.get_current_span()
    with _tracer.start_as_current_span(
        f"{names.TWILIO_SPAN_PREFIX}{method} {resource}", kind=SpanKind.CLIENT,
        attributes=attributes, record_exception=False, set_status_on_exception=False,
    ) as span:
        try:
            response = await send(method, url, *args, **kwargs)
        except BaseException as error:
            _failed(span, error)
            raise
        status = int(getattr(response, "status_code", 0) or 0)
        span.set_attribute(names.HTTP_STATUS, status)
        if status >= 400:
            code = _answer(getattr(response, "text", None)).get("code")
            code_text = str(code) if isinstance(code, int) else "none"
            span.set_attribute(names.TWILIO_ERROR_CODE, code_text)
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            add(names.TWILIO_ERRORS, 1, {names.RESOURCE: resource, names.HTTP_STATUS: status,
                                         names.TWILIO_ERROR_CODE: code_text})
            if status == 429:
                add(names.RATE_LIMITED, 1, {names.RESOURCE: resource})
        elif creating and 200 <= status < 300:
            sid = _answer(getattr(response, "text", None)).get("sid")
            attribute = _SID_ATTRIBUTES.get(sid[:2]) if isinstance(sid, str) else None
            if attribute and _SID.fullmatch(sid):
                span.set_attribute(attribute, sid)
                if caller.is_recording():
                    caller.set_attribute(attribute, sid)
            add(names.CREATES, 1, {names.RESOURCE: resource, names.FUNCTION: FUNCTION.get()})
        return response


# ---- Metrics -----------------------------------------------------------------------------------


def _instrument(name: str) -> Any:
    found = _instruments.get(name)
    if found is None:
        if name not in names.METRICS:
            raise ValueError(f"{name!r} is not one of shared.telemetry.names.METRICS")
        if name == names.QUEUE_AGE:
            found = _meter.create_histogram(name, unit="s")
        else:
            found = _meter.create_counter(name)
        _instruments[name] = found
    return found


def add(metric: str, amount: int, attributes: Mapping[str, Any]) -> None:
    if _ready():
        _instrument(metric).add(amount, dict(attributes))


def record(metric: str, value: float, attributes: Mapping[str, Any]) -> None:
    if _ready():
        _instrument(metric).record(value, dict(attributes))
