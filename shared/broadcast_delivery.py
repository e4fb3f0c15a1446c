"""What broadcast_send does with one queue message: send it once, through the same code as
send_sms and make_call, and record where it ended.

The idempotency key (broadcast id, recipient) is claimed as for an Idempotency-Key header, so a
message the queue delivers twice (a redelivery after a crash, a visibility timeout that ran out
mid-send) still reaches Twilio once. Raising `TryAgain` hands the message back to the queue,
which delivers it again after host.json's visibilityTimeout, up to maxDequeueCount times.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import azure.functions as func

from shared import broadcasts, calls, idempotency, responses, rest_answers, sms
from shared.settings import load_call_settings, load_sms_settings

RETRY_STATUSES = frozenset({409, 500, 502, 503, 504})


class TryAgain(Exception):
    """The message could not be settled now: let the queue deliver it again later."""


async def deliver(task: broadcasts.Task) -> str:
    """Send one recipient's text or call; the state it ended in (sent, failed). Raises TryAgain
    (and anything storage raises) for the queue to deliver the message again."""
    if task.kind == "sms":
        settings: Any = load_sms_settings()
        function = "broadcast_sms"
    else:
        settings = load_call_settings()
        function = "broadcast_call"

    async def lookup(
        to: str, from_: str | None, since: datetime.datetime
    ) -> func.HttpResponse | None:
        if task.kind == "sms":
            message = await sms.find(settings, to, from_, since)
            return (
                None
                if message is None
                else _created(sms.answer(message, await sms.record(message)))
            )
        call = await calls.find(settings, to, from_, since)
        return None if call is None else _created(calls.answer(call, await calls.record(call)))

    held = await idempotency.claim(function, task.idempotency_key, task.fingerprint, lookup)
    if isinstance(held, idempotency.Claim):
        response = await _attempt(task, settings, held)
        await held.finish(response)
    else:
        response = held
    return await _settle(task, response)


def _created(body: dict[str, object]) -> func.HttpResponse:
    return responses.json_body(body, 201)


async def _attempt(
    task: broadcasts.Task, settings: Any, claim: idempotency.Claim
) -> func.HttpResponse:
    function = "send_sms" if task.kind == "sms" else "make_call"
    try:
        if task.kind == "sms":
            request: Any = sms.parse(
                {"to": task.to, "body": task.text or "", **_from(task)}, settings
            )
        else:
            fields = {"to": task.to, **_from(task)}
            if task.text:
                fields["message"] = task.text
            request = calls.parse(fields, settings)
    except rest_answers.REFUSALS as refusal:
        return rest_answers.refused(function, refusal)
    if refusal := await claim.sending(request.to, request.from_):
        return refusal
    subject = sms.SUBJECT if task.kind == "sms" else calls.SUBJECT
    try:
        if task.kind == "sms":
            created: Any = await sms.send(request, settings)
        else:
            created = await calls.place(request, settings)
    except Exception as error:  # every failure becomes an answer, as for a single send
        return rest_answers.twilio_failure(error, subject, request.to, settings.rest.http_timeout)
    if task.kind == "sms":
        return _created(sms.answer(created, await sms.record(created, request)))
    return _created(calls.answer(created, await calls.record(created, request.message)))


def _from(task: broadcasts.Task) -> dict[str, str]:
    return {"from": task.from_} if task.from_ else {}


async def _settle(task: broadcasts.Task, response: func.HttpResponse) -> str:
    body = json.loads(response.get_body() or b"{}")
    if response.status_code == 201:
        await broadcasts.mark(task.broadcast, task.to, "sent", sid=str(body.get("sid") or ""))
        return "sent"
    if response.status_code in RETRY_STATUSES:
        raise TryAgain(f"HTTP {response.status_code}: {body.get('error', '')}")
    code = body.get("twilio_code")
    error = body.get("error") or f"HTTP {response.status_code}"
    await broadcasts.mark(
        task.broadcast, task.to, "failed", error=f"{code}: {error}" if code else error
    )
    return "failed"
