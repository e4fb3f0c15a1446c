"""A Key Vault reference App Service could not resolve reaches the app as its own text: each
secret setting holding one is a settings error that says so, through the real worker. Webhooks
fail closed (403) and log why; make_call answers 500 naming the setting; the reference itself
(it names the vault and the secret) is never logged or answered."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest
from conftest import API_KEY, APP_HOSTNAME, AUTH_TOKEN, SECONDARY_TOKEN, SMS_PARAMS, VOICE_PARAMS
from twilio.request_validator import RequestValidator

from shared.common.settings import SECRET_SETTINGS

PUBLIC = f"https://{APP_HOSTNAME}"
VAULT = "kv-twilio-prod-7f3a"
REFERENCE = f"@Microsoft.KeyVault(SecretUri=https://{VAULT}.vault.azure.net/secrets/twilio-token/)"
OTHER_FORM = f"@Microsoft.KeyVault(VaultName={VAULT};SecretName=twilio-token)"


def app_log(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("shared")]


def assert_explains_unresolved_reference(text: str, setting: str) -> None:
    assert f"{setting} is a Key Vault reference that App Service did not resolve" in text
    for check in ("Key Vault Secrets User", "keyVaultReferenceIdentity", "secret URI", "portal"):
        assert check in text
    assert VAULT not in text and "SecretUri" not in text


def test_every_secret_setting_is_checked():
    assert {
        "TWILIO_AUTH_TOKEN",
        "TWILIO_AUTH_TOKEN_SECONDARY",
        "TWILIO_API_SECRET",
        "TWILIO_SHARED_KEY_SECRET",
        "TWILIO_SHARED_KEY_SECRET_SECONDARY",
    } <= SECRET_SETTINGS


@pytest.mark.parametrize(
    "setting",
    [
        "TWILIO_AUTH_TOKEN",
        "TWILIO_AUTH_TOKEN_SECONDARY",
        "TWILIO_SHARED_KEY_SECRET",
        "TWILIO_SHARED_KEY_SECRET_SECONDARY",
    ],
)
@pytest.mark.parametrize(("path", "params"), [("/api/voice_url", VOICE_PARAMS),
                                              ("/api/sms_url", SMS_PARAMS)])
@pytest.mark.parametrize("reference", [REFERENCE, OTHER_FORM], ids=["secret-uri", "vault-name"])
def test_webhooks_fail_closed_and_log_why(
    worker_host, app_settings, caplog, setting, path, params, reference
):
    caplog.set_level(logging.DEBUG)
    if setting != "TWILIO_AUTH_TOKEN":
        app_settings.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    app_settings.setenv(setting, reference)
    # Signed with the real token: even a genuine request is not answered on a broken config.
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + path, params)

    response = worker_host.request(
        "POST",
        path,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
        body=urlencode(params),
        base_url=PUBLIC,
    )

    assert response.status == 403
    assert response.body == b""
    [line] = app_log(caplog)
    assert line.levelno == logging.ERROR
    assert_explains_unresolved_reference(line.getMessage(), setting)
    assert VAULT not in caplog.text


@pytest.mark.parametrize(
    ("setting", "env"),
    [
        ("TWILIO_AUTH_TOKEN", {}),
        ("TWILIO_API_SECRET", {"TWILIO_API_KEY": API_KEY}),
    ],
)
def test_make_call_answers_500_naming_the_setting(
    worker_host, twilio_api, app_settings, caplog, setting, env
):
    caplog.set_level(logging.DEBUG)
    for name, value in env.items():
        app_settings.setenv(name, value)
    app_settings.setenv(setting, REFERENCE)

    response = worker_host.request(
        "POST",
        "/api/make_call",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"to": "+14155550123"}),
        base_url=PUBLIC,
    )

    assert response.status == 500
    body = response.json()
    assert body["settings"] == [setting]
    assert_explains_unresolved_reference(body["error"], setting)
    [line] = app_log(caplog)
    assert_explains_unresolved_reference(line.getMessage(), setting)
    assert VAULT not in caplog.text
    assert twilio_api.requests == []


def test_a_resolved_secondary_token_still_works_beside_the_primary(worker_host, app_settings):
    """The check looks at the value's prefix only: a real secret is never mistaken for one."""
    app_settings.setenv("TWILIO_AUTH_TOKEN_SECONDARY", SECONDARY_TOKEN)
    signature = RequestValidator(SECONDARY_TOKEN).compute_signature(
        PUBLIC + "/api/voice_url", VOICE_PARAMS
    )

    response = worker_host.request(
        "POST",
        "/api/voice_url",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
        body=urlencode(VOICE_PARAMS),
        base_url=PUBLIC,
    )

    assert response.status == 200
