"""What a call flow is checked against: make_call's policy (allowed countries, caller IDs), read
from the same settings make_call reads, without the REST credentials a webhook does not need."""

from __future__ import annotations

from typing import NamedTuple

from shared.callflows.flow import Policy
from shared.common.settings import Reader, loader
from shared.outbound.settings import allowed_countries, number_list

CALL_FLOW_SETTINGS = ("TWILIO_PHONE_NUMBER", "CALLER_IDS", "CALL_ALLOWED_COUNTRIES")


class CallFlowSettings(NamedTuple):
    policy: Policy


def _call_flow_settings(reader: Reader) -> CallFlowSettings:
    phone_number = reader.get("TWILIO_PHONE_NUMBER")
    caller_ids = number_list(reader, "CALLER_IDS")
    if phone_number:
        caller_ids = caller_ids | number_list(reader, "TWILIO_PHONE_NUMBER")
    countries = allowed_countries(
        reader, "CALL_ALLOWED_COUNTRIES", phone_number, "the dialled numbers' country"
    )
    return CallFlowSettings(Policy(allowed_countries=countries, caller_ids=caller_ids))


load_call_flow_settings = loader(CALL_FLOW_SETTINGS, _call_flow_settings)
