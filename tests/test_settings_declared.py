"""The settings trap: a setting read in code but missing from its loader's list must fail loudly,
never read as unset. The reader holds only the declared names (any other raises KeyError), and
this test finds the names the code reads from the code itself, not from the lists it checks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from shared import app_settings
from shared.broadcasts import settings as broadcast_settings
from shared.common import settings
from shared.messageflows import settings as message_flow_settings
from shared.outbound import settings as outbound_settings
from shared.records import settings as storage_settings
from shared.telemetry import settings as telemetry_settings
from shared.webhooks import settings as webhook_settings

# Each capability reads its settings in its own shared/<capability>/settings.py.
SOURCES = tuple(sorted(Path(settings.__file__).parents[1].glob("*/settings.py")))
SETTING_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|AzureWebJobsStorage(?:__[A-Za-z]+)?")


def names_read_in_code() -> set[str]:
    """Every upper-case string literal passed to a call in a shared/*/settings.py:
    reader.get(...), reader.required(...), optional_pattern(reader, ...), _numbers(reader, ...)
    and so on."""
    found: set[str] = set()
    nodes = [node for source in SOURCES for node in ast.walk(ast.parse(source.read_text()))]
    for node in nodes:
        if isinstance(node, ast.Call):
            for arg in node.args:
                value = arg.value if isinstance(arg, ast.Constant) else None
                if isinstance(value, str) and SETTING_NAME.fullmatch(value):
                    found.add(value)
    return found


def test_every_name_the_code_reads_is_declared():
    read = names_read_in_code()
    assert {"TWILIO_ACCOUNT_SID", "SMS_ALLOWED_COUNTRIES", "WEBSITE_HOSTNAME"} <= read
    declared = (
        set(app_settings.ALL_SETTINGS)
        | set(app_settings.PLATFORM_SETTINGS)
        | set(app_settings.STORAGE_SETTINGS)
    )
    assert read <= declared, f"read but declared by no loader: {sorted(read - declared)}"


def test_an_undeclared_name_cannot_be_read():
    reader = settings.Reader({"TWILIO_ACCOUNT_SID": ""})
    assert reader.get("TWILIO_ACCOUNT_SID") is None
    with pytest.raises(KeyError):
        reader.get("TWILIO_ACCOUNT_SIDD")


@pytest.mark.parametrize(
    "load",
    [
        webhook_settings.load_webhook_settings,
        outbound_settings.load_call_settings,
        outbound_settings.load_sms_settings,
        outbound_settings.load_rest_settings,
        storage_settings.load_storage_settings,
        broadcast_settings.load_broadcast_settings,
        message_flow_settings.load_message_flow_settings,
        telemetry_settings.load_telemetry_settings,
    ],
)
def test_each_loader_reads_only_what_it_declares_in_every_branch(load):
    """With every setting set (API key path, Messaging Service path), no loader reaches for a
    name it did not declare; the other branches are the defaults the app tests exercise."""
    env = {
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
        "TWILIO_AUTH_TOKEN": "t",
        "TWILIO_AUTH_TOKEN_SECONDARY": "u",
        "TWILIO_API_KEY": "SK" + "b" * 32,
        "TWILIO_API_SECRET": "s",
        "TWILIO_PHONE_NUMBER": "+14155550100",
        "CALLER_IDS": "+14155550101",
        "SMS_SENDERS": "+14155550102",
        "CALL_ALLOWED_COUNTRIES": "US",
        "SMS_ALLOWED_COUNTRIES": "US",
        "TWILIO_MESSAGING_SERVICE_SID": "MG" + "c" * 32,
        "TWILIO_HTTP_TIMEOUT": "5",
        "PUBLIC_BASE_URL": "https://app.example.com",
        "VOICE_GREETING": "hi",
        "VOICE_NAME": "alice",
        "VOICE_LANGUAGE": "en-US",
        "SMS_REPLY": "ok",
        "SMS_HELP_REPLY": "Contoso: reply STOP to stop.",
        "WEBSITE_HOSTNAME": "app.azurewebsites.net",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "BROADCAST_SENDS_PER_SECOND": "50",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-"
                                                 "000000000000;IngestionEndpoint=https://x/",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD",
    }
    load(env)
    load({**env, "TWILIO_API_KEY": "", "TWILIO_API_SECRET": "", "TWILIO_MESSAGING_SERVICE_SID": ""})
    load(
        {
            **env,
            "AzureWebJobsStorage": "",
            "AzureWebJobsStorage__accountName": "appstorage",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000000",
        }
    )
