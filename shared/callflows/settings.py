"""What a call flow is checked against: make_call's policy (allowed countries, caller IDs) for
the numbers it rings, send_sms's (allowed countries) for the numbers its voicemails text, and the
app's own numbers (TWILIO_PHONE_NUMBER, SMS_SENDERS), which it may do neither to; read from the
same settings make_call and send_sms read, without the REST credentials a webhook does not need.

`shared.outbound.settings` (imported on first use) judges them with the number library; the check
stamp compares their raw values only, without it."""

from __future__ import annotations

from shared.callflows.flow import Policy
from shared.common.settings import Reader, loader
from shared.webhooks.settings import CALL_POLICY_SETTINGS as CALL_FLOW_SETTINGS


def _call_flow_policy(reader: Reader) -> Policy:
    from shared.outbound.settings import allowed_countries, number_list, own_numbers

    phone_number = reader.get("TWILIO_PHONE_NUMBER")
    caller_ids = number_list(reader, "CALLER_IDS")
    if phone_number:
        caller_ids = caller_ids | number_list(reader, "TWILIO_PHONE_NUMBER")
    countries = allowed_countries(
        reader, "CALL_ALLOWED_COUNTRIES", phone_number, "the dialled numbers' country"
    )
    # send_sms's countries matter only to a voicemail's notify_sms: read aside, so that a typo
    # in them refuses those numbers (the check names the setting), not the whole phone line.
    aside = Reader(reader.env)
    texted = allowed_countries(aside, "SMS_ALLOWED_COUNTRIES", phone_number,
                               "the messages' country")
    texting_problem = "; ".join(f"{name} {why}" for name, why in aside.problems) or None
    return Policy(allowed_countries=countries, caller_ids=caller_ids,
                  sms_allowed_countries=texted, own_numbers=own_numbers(reader),
                  texting_problem=texting_problem)


load_call_flow_policy = loader(CALL_FLOW_SETTINGS, _call_flow_policy)

# The policy settings as they are, not yet judged (which needs the number library): what a flow's
# check stamp is compared with (shared.common.stamp). voice_url has them in its own settings
# (WebhookSettings.call_policy); this is for the tools.
PolicyInputs = tuple[tuple[str, str | None], ...]
load_policy_inputs = loader(CALL_FLOW_SETTINGS,
                            lambda reader: tuple((n, reader.get(n)) for n in CALL_FLOW_SETTINGS))
