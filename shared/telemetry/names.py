"""Every name the app's telemetry emits: metric instruments, span names and span attributes.

One list, because three things must agree on it: the code that emits (shared.telemetry), the
alert rules and workbook in infra/ (their queries name these), and the test that holds the
queries to what the app emits (tests/test_infra.py). In Application Insights a metric is a
`customMetrics` row whose `name` is the instrument's name; a span is a `requests` row (server
spans: one per function invocation) or a `dependencies` row (client and internal spans), and
every attribute is a key of `customDimensions`.
"""

from __future__ import annotations

# ---- Metrics (OpenTelemetry instruments) -------------------------------------------------------
# Counters unless marked otherwise; their attributes are listed beside each.
CREATES = "twilio.creates"  # calls and messages created at Twilio: RESOURCE, FUNCTION
REFUSALS = "app.refusals"  # requests the app refused: FUNCTION, REFUSAL_REASON
TWILIO_ERRORS = "twilio.errors"  # Twilio's error answers: RESOURCE, HTTP_STATUS, TWILIO_ERROR_CODE
RATE_LIMITED = "twilio.rate_limited"  # Twilio's 429 answers: RESOURCE
DEFERRALS = "broadcast.deferrals"  # broadcast sends put off for later: DEFER_REASON
BROADCAST_SENDS = "broadcast.sends"  # broadcast recipients settled: BROADCAST_OUTCOME, KIND
QUEUE_AGE = "broadcast.queue_age"  # histogram, seconds: a broadcast-sends message's age
POISONED = "broadcast.poisoned"  # recipients given up on from the poison queue
OPT_OUTS = "optouts.changes"  # opt-outs and opt-ins kept: OPTOUT_CHANGE, OPTOUT_SOURCE
FLOW_OUTCOMES = "callflow.outcomes"  # how call-flow steps ended: FLOW_OUTCOME
STORAGE_UNAVAILABLE = "storage.unavailable"  # storage answers that failed: STORAGE_SERVICE,
#                                              HTTP_STATUS
# Genuine webhooks answered with the safe TwiML (an apology, or nothing) because the app could
# not do their work: a malformed setting, a refused call flow. Twilio got a 200, so the failure
# rate alert counts these beside the invocations that failed: FUNCTION, FAILURE_REASON
WEBHOOK_FAILURES = "app.webhook_failures"

METRICS = (CREATES, REFUSALS, TWILIO_ERRORS, RATE_LIMITED, DEFERRALS, BROADCAST_SENDS,
           QUEUE_AGE, POISONED, OPT_OUTS, FLOW_OUTCOMES, STORAGE_UNAVAILABLE, WEBHOOK_FAILURES)

# ---- Attributes (on spans and metric points) ---------------------------------------------------
FUNCTION = "app.function"  # the function folder's name: make_call, broadcast_send...
REFUSAL_REASON = "app.refusal_reason"  # a token: policy-destination, policy-from, opted-out...
RESOURCE = "twilio.resource"  # Calls, Messages, Recordings...
HTTP_STATUS = "http.response.status_code"
TWILIO_ERROR_CODE = "twilio.error_code"  # Twilio's own code (21610...), or "none"
CALL_SID = "twilio.call_sid"
MESSAGE_SID = "twilio.message_sid"
RECORDING_SID = "twilio.recording_sid"
BROADCAST_ID = "broadcast.id"
BROADCAST_OUTCOME = "broadcast.outcome"  # sent, failed, refused
KIND = "broadcast.kind"  # sms, call
DEFER_REASON = "broadcast.defer_reason"  # paced, rate-limited, unavailable, in-flight,
#                                           unknown-outcome
IDEMPOTENCY_OUTCOME = "idempotency.outcome"  # claimed, replayed, in-flight, found-at-twilio...
OPTOUT_CHANGE = "optout.change"  # opted-out, opted-in
OPTOUT_SOURCE = "optout.source"  # sms_url, twilio-21610, api
FLOW_OUTCOME = "callflow.outcome"  # voicemail-taken, dial-answered, dial-unanswered...
STORAGE_SERVICE = "storage.service"  # table, queue
FAILURE_REASON = "app.failure_reason"  # settings, call-flow
# On a record (Table Storage field) and on a status callback's span: the trace that created
# the SID, so a callback's span links to its create.
CREATED_TRACE = "app.created_traceparent"

# ---- Added with shared.telemetry (issue 25): names only added, never renamed -------------------
HTTP_METHOD = "http.request.method"  # on invocation and Twilio REST spans: GET, POST...
URL_PATH = "url.path"  # an invocation's path (/api/make_call), never its query
INVOCATION_ID = "faas.invocation_id"  # the Functions host's invocation id
TRIGGER = "faas.trigger"  # http, pubsub (a queue), timer
ERROR_TYPE = "error.type"  # the exception's class name, never its message
TWILIO_RETRY = "twilio.retry"  # true: this REST request repeats an earlier attempt of the work
LINKED_TRACE = "app.linked_traceparent"  # on a broadcast message's span: its producer's trace

# Span names. An invocation's span is named after its function folder (make_call...); a Twilio
# REST request's is TWILIO_SPAN_PREFIX + method + resource ("Twilio POST Calls").
TWILIO_SPAN_PREFIX = "Twilio "
BROADCAST_MESSAGE_SPAN = "broadcast.message"  # one recipient's send within broadcast_send

# The query parameter that carries a create's W3C traceparent on the status callback URLs it
# gives Twilio (signed with the rest of the URL): the callback's span links to it.
CALLBACK_TRACE_PARAM = "traceparent"
