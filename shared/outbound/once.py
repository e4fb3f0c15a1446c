"""One text the app sends on its own account (not asked for over HTTP), sent at most once for a
key: a voicemail's notification, whatever number of times Twilio delivers the callback that
causes it. The same code and policy as send_sms (shared.outbound.sms, opt-outs included), under
the same Idempotency-Key rules (shared.records.idempotency): a retry replays, an unknown outcome
is looked up at Twilio, a failure that proves nothing was sent releases the key.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib

import azure.functions as func

from shared.common import responses
from shared.common.settings import SettingsError
from shared.outbound import answers, sms
from shared.outbound.settings import SmsSettings
from shared.records import idempotency, storage


async def text(function: str, key: str, to: str, body: str, settings: SmsSettings
               ) -> func.HttpResponse:
    """send_sms's answer for this text (201, a refusal, 503 to try again later...), sending it
    only if no earlier call with the same `function` and `key` did."""
    try:
        wanted = sms.parse({"to": to, "body": body}, settings)
        await sms.screen(wanted)
    except answers.REFUSALS as refusal:
        return answers.refused(function, refusal)
    except SettingsError as error:
        return answers.settings_error(function, error)
    except storage.StorageUnavailable as error:
        return answers.cannot_screen(function, error)

    async def lookup(
        to: str, from_: str | None, since: datetime.datetime, owner: str
    ) -> func.HttpResponse | None:
        found = await sms.find(settings, dataclasses.replace(wanted, to=to, from_=from_), since,
                               owner)
        return None if found is None else responses.json_body(sms.answer(found, True), 201)

    digest = hashlib.sha256(f"{function}\n{to}\n{body}".encode()).hexdigest()
    held = await idempotency.claim(function, key, digest, lookup,
                                   sending=(wanted.to, wanted.from_))
    if not isinstance(held, idempotency.Claim):
        return held
    try:
        created = await sms.send(wanted, settings)
    except Exception as error:  # every failure becomes send_sms's answer
        response = answers.twilio_failure(error, sms.SUBJECT, wanted.to,
                                          settings.rest.http_timeout)
    else:
        recorded = await sms.record(created, wanted, held.owner)
        response = responses.json_body(sms.answer(created, recorded), 201)
    await held.finish(response)
    return response
