"""Telemetry: OpenTelemetry traces and metrics to Application Insights (issue 25).

Entry points: `traced` (the decorator every function folder's `main` wears: one span per
invocation, continuing the Functions host's trace context), `current_traceparent` (the W3C
traceparent of the span now running, for a record or a callback URL), `callback_query` (a
status callback URL's query with that traceparent added), `note_webhook` (a webhook's SIDs on
its span, and the link to the span that created them), `count` and `set_attributes`, and the
broadcast helpers (`broadcast_message`, `count_broadcast_send`, `count_deferral`,
`observe_queue_age`, `count_poisoned`). Every name emitted is in `names`.

This module is imported at every function folder's load, so it must stay cheap: it imports no
OpenTelemetry. Whether telemetry is on is read per call from the settings
(APPLICATIONINSIGHTS_CONNECTION_STRING, `settings`); off, each entry point returns at once and
nothing else is imported. On, `runtime` (OpenTelemetry, the Azure Monitor distro) is imported
and configured on the first use in the process, and telemetry never fails a request: a broken
setting is logged once and telemetry stays off.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import azure.functions as func

from shared.common import logs
from shared.common.settings import SettingsError
from shared.telemetry import names
from shared.telemetry.settings import load_telemetry_settings

logger = logs.get_logger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
AttributeValue = str | bool | int | float

# Providers a test installed (`use_providers`): telemetry is on, through them, whatever the
# settings say.
_test_providers: tuple[Any, Any] | None = None
_reported: set[str] = set()


def enabled() -> bool:
    """Whether telemetry is on: a connection string is set (or a test installed providers).
    A malformed setting is logged once and counts as off: telemetry never fails a request."""
    if _test_providers is not None:
        return True
    try:
        return load_telemetry_settings().connection_string is not None
    except SettingsError as error:
        problem = error.describe()
        if problem not in _reported:
            _reported.add(problem)
            logger.error("telemetry outcome=off reason=settings: %s", problem)
        return False


def use_providers(tracer_provider: Any, meter_provider: Any) -> None:
    """Send every span and metric to these providers (tests: an InMemorySpanExporter's and an
    InMemoryMetricReader's), whatever the settings; None, None goes back to the settings."""
    global _test_providers
    _test_providers = None if tracer_provider is None else (tracer_provider, meter_provider)
    from shared.telemetry import runtime

    runtime.use_providers(tracer_provider, meter_provider)


# ---- Invocations -------------------------------------------------------------------------------

_TRIGGERS = {func.HttpRequest: "http", func.QueueMessage: "pubsub", func.TimerRequest: "timer"}


def traced(main: F) -> F:
    """One span per invocation of `main`, named after its function folder, continuing the
    trace context the Functions host passes (`context.trace_context`); its outcome (the HTTP
    status, an exception's type) on it. An HTTP invocation's span is a server span (a
    `requests` row), a queue message's a consumer span (also `requests`), a timer's a server
    span.

    The worker hands `context` only to a function that declares it, so the wrapper declares it
    (keyword-only, `azure.functions.Context`) on `main`'s behalf; `main` is called without it.
    Off, the wrapper only awaits `main`."""
    function = main.__module__.rsplit(".", 1)[-1]
    signature = inspect.signature(main)
    parameters = list(signature.parameters.values())
    first = parameters[0].annotation if parameters else None
    trigger = _TRIGGERS.get(first, "other") if isinstance(first, type) else "other"

    if inspect.iscoroutinefunction(main):

        @functools.wraps(main)
        async def invocation(*args: Any, context: func.Context | None = None,
                             **kwargs: Any) -> Any:
            if not enabled():
                return await main(*args, **kwargs)
            from shared.telemetry import runtime

            given = args[0] if args else next(iter(kwargs.values()), None)
            with runtime.invocation(function, trigger, given, context) as span:
                return runtime.finished(span, await main(*args, **kwargs))

    else:  # a sync function (the worker runs it on its thread pool)

        @functools.wraps(main)
        def invocation(*args: Any, context: func.Context | None = None, **kwargs: Any) -> Any:
            if not enabled():
                return main(*args, **kwargs)
            from shared.telemetry import runtime

            given = args[0] if args else next(iter(kwargs.values()), None)
            with runtime.invocation(function, trigger, given, context) as span:
                return runtime.finished(span, main(*args, **kwargs))

    context_parameter = inspect.Parameter(
        "context", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=func.Context
    )
    invocation.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters, context_parameter]
    )
    invocation.__annotations__ = {**main.__annotations__, "context": func.Context}
    return invocation  # type: ignore[return-value]


# ---- The span now running ----------------------------------------------------------------------


def current_traceparent() -> str | None:
    """The W3C traceparent (`00-<trace id>-<span id>-<flags>`) of the span now running, or None
    when telemetry is off or no span runs: what a record keeps to tie itself to the request
    that created it."""
    if not enabled():
        return None
    from shared.telemetry import runtime

    return runtime.current_traceparent()


def callback_query(query: str = "") -> str:
    """`query` (empty, or a `?name=value...` query string) with the running span's traceparent
    added as `traceparent=`, for a status callback URL: Twilio signs the whole URL and sends it
    back, so the callback's span can link to this one. Unchanged when telemetry is off."""
    traceparent = current_traceparent()
    if traceparent is None:
        return query
    return f"{query}{'&' if query else '?'}{names.CALLBACK_TRACE_PARAM}={traceparent}"


def set_attributes(attributes: Mapping[str, AttributeValue]) -> None:
    """Put these attributes (names from `names`) on the span now running, if any. Never a
    phone number in full, a body or a secret (shared.common.redact)."""
    if not enabled():
        return
    from shared.telemetry import runtime

    runtime.set_attributes(attributes)


def note_webhook(param: Callable[[str], str | None], query: Mapping[str, str]) -> None:
    """A verified webhook's SIDs (CallSid, MessageSid, RecordingSid, read with `param`) on the
    running span; and when its URL's `query` carries the traceparent of the request that
    created them (`callback_query`), a link to that span and the traceparent as
    names.CREATED_TRACE. Only for a request whose signature held: the URL is Twilio's."""
    if not enabled():
        return
    from shared.telemetry import runtime

    runtime.note_webhook(param, query)


def mark_retry(retry: bool = True) -> None:
    """The Twilio REST requests of the running invocation from here on repeat an earlier
    attempt of the same work (a queue message delivered again, a create looked up after an
    unknown outcome): their spans say `twilio.retry` true."""
    if not enabled():
        return
    from shared.telemetry import runtime

    runtime.RETRY.set(retry)


# ---- Metrics -----------------------------------------------------------------------------------


def count(metric: str, attributes: Mapping[str, AttributeValue] | None = None,
          amount: int = 1) -> None:
    """Add `amount` to the counter `metric` (one of names.METRICS) with these attributes."""
    if not enabled():
        return
    from shared.telemetry import runtime

    runtime.add(metric, amount, attributes or {})


def count_refusal(function: str, reason: str) -> None:
    """A request the app refused (names.REFUSALS): `reason` a short token such as
    policy-destination, opted-out, bad-request, signature."""
    count(names.REFUSALS, {names.FUNCTION: function, names.REFUSAL_REASON: reason})


def count_webhook_failure(function: str, reason: str) -> None:
    """A genuine webhook answered with the safe TwiML because the app could not do its work
    (names.WEBHOOK_FAILURES): `reason` settings (one is malformed) or call-flow (refused)."""
    count(names.WEBHOOK_FAILURES, {names.FUNCTION: function, names.FAILURE_REASON: reason})


def count_opt_out(opted_out: bool, source: str) -> None:
    """An opt-out (or opt-in) kept (names.OPT_OUTS); `source`: sms_url, twilio-21610, api."""
    change = "opted-out" if opted_out else "opted-in"
    count(names.OPT_OUTS, {names.OPTOUT_CHANGE: change, names.OPTOUT_SOURCE: source})


def count_flow_outcome(outcome: str) -> None:
    """How a call-flow step ended (names.FLOW_OUTCOMES): voicemail-taken, dial-answered,
    dial-unanswered..."""
    count(names.FLOW_OUTCOMES, {names.FLOW_OUTCOME: outcome})


# ---- Broadcasts (wired in shared.broadcasts) ---------------------------------------------------


@contextlib.contextmanager
def broadcast_message(broadcast_id: str, kind: str, traceparent: str | None = None
                      ) -> Iterator[None]:
    """A span (names.BROADCAST_MESSAGE_SPAN, an internal span) around one recipient's send in
    broadcast_send: a child of the invocation's span, with names.BROADCAST_ID and names.KIND,
    linked to `traceparent` (the span that queued the message: the broadcasts request's, kept
    in the message) so one search for the broadcast id shows the request and every send. The
    Twilio request made inside it is its child, and the SID it creates is set on it. An
    exception leaving the block marks the span failed (its type only) and goes on."""
    if not enabled():
        yield
        return
    from shared.telemetry import runtime

    with runtime.broadcast_message(broadcast_id, kind, traceparent):
        yield


def count_broadcast_send(outcome: str, kind: str) -> None:
    """One broadcast recipient settled (names.BROADCAST_SENDS): `outcome` sent, failed or
    refused; `kind` sms or call. Its rate over time is the broadcast sends per second."""
    count(names.BROADCAST_SENDS, {names.BROADCAST_OUTCOME: outcome, names.KIND: kind})


def count_deferral(reason: str) -> None:
    """A broadcast send put off for later (names.DEFERRALS): `reason` paced, rate-limited,
    unavailable (Twilio unreachable, storage failing), in-flight or unknown-outcome."""
    count(names.DEFERRALS, {names.DEFER_REASON: reason})


def count_poisoned(amount: int = 1) -> None:
    """Recipients given up on from the poison queue (names.POISONED)."""
    count(names.POISONED, {}, amount)


def observe_queue_age(seconds: float) -> None:
    """A broadcast-sends message's age when broadcast_send took it (names.QUEUE_AGE, a
    histogram in seconds): now less the message's insertion time (func.QueueMessage's
    `insertion_time`). Taken before the message is read, so it has no kind: a message that
    does not parse is as old as any other."""
    if not enabled():
        return
    from shared.telemetry import runtime

    runtime.record(names.QUEUE_AGE, max(0.0, seconds), {})
