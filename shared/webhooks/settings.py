"""The webhooks' settings (voice_url, sms_url and the status callbacks): only what checking a
signature and answering with TwiML needs, so nothing about the REST API can break a webhook."""

from __future__ import annotations

from typing import NamedTuple

from shared.common.settings import Reader, loader, local_run, optional_pattern, public_origin

DEFAULT_VOICE_GREETING = "Hello Monkey!"
DEFAULT_SMS_REPLY = "Hey, thanks for the ping! Twilio and Azure rock!"
# <Say voice="Polly.Joanna-Neural"> and language="en-US": Twilio's own value sets grow, so only
# the shape is checked here; Twilio reports an unknown voice in its debugger. Sources, compiled
# only when the setting is set (docs/benchmark.md: no pattern a webhook may not use at import).
_VOICE_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_LANGUAGE = r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}"


# The policy settings a call flow is judged by (shared.callflows.settings): make_call's for the
# numbers it rings, send_sms's for those its voicemails text, and the app's own numbers, which it
# may do neither to. Read raw here, in the same pass as the rest, so that voice_url reads the
# environment once a request (a second pass for the flow's cost it 2 % of a warm webhook through
# the host, BENCHMARKS.md).
CALL_POLICY_SETTINGS = ("TWILIO_PHONE_NUMBER", "CALLER_IDS", "CALL_ALLOWED_COUNTRIES",
                        "SMS_ALLOWED_COUNTRIES", "SMS_SENDERS")

WEBHOOK_SETTINGS = (
    "TWILIO_AUTH_TOKEN",
    "TWILIO_AUTH_TOKEN_SECONDARY",
    "TWILIO_SHARED_KEY_SECRET",
    "TWILIO_SHARED_KEY_SECRET_SECONDARY",
    "PUBLIC_BASE_URL",
    "VOICE_GREETING",
    "VOICE_NAME",
    "VOICE_LANGUAGE",
    "SMS_REPLY",
    "CALL_FLOW",
    *CALL_POLICY_SETTINGS,
)


class WebhookSettings(NamedTuple):
    """What the Twilio webhooks (voice_url, sms_url) need."""

    auth_tokens: tuple[str, ...]
    # The secrets of the SharedKeys a Twilio Webhook Setting signs with (empty: none is set up);
    # a webhook carrying X-Twilio-Webhooks-Signature-Settings is checked against these instead.
    shared_key_secrets: tuple[str, ...]
    # PUBLIC_BASE_URL, else https://WEBSITE_HOSTNAME on Azure, else None.
    trusted_origin: str | None
    # WEBSITE_HOSTNAME is a loopback one, as `func start` sets it: a local run, where a request's
    # own host and forwarding headers may name the origin Twilio signed (shared.common.public_url).
    local_run: bool
    voice_greeting: str
    voice_name: str | None
    voice_language: str | None
    sms_reply: str
    # CALL_FLOW: the call-flow file voice_url walks callers through (shared.callflows); None:
    # voice_url says VOICE_GREETING.
    call_flow: str | None
    # CALL_POLICY_SETTINGS as they are, not judged (the number library would be needed): which
    # checked flow a call walks (shared.callflows.loading keeps one per distinct value).
    call_policy: tuple[tuple[str, str | None], ...]


def webhook_settings(reader: Reader) -> WebhookSettings:
    token = reader.required("TWILIO_AUTH_TOKEN", ": webhook signatures cannot be checked")
    secondary = reader.get("TWILIO_AUTH_TOKEN_SECONDARY")
    shared_keys = (
        reader.get("TWILIO_SHARED_KEY_SECRET"),
        reader.get("TWILIO_SHARED_KEY_SECRET_SECONDARY"),
    )
    return WebhookSettings(
        auth_tokens=tuple(t for t in (token, secondary) if t),
        shared_key_secrets=tuple(k for k in shared_keys if k),
        trusted_origin=public_origin(reader),
        local_run=local_run(reader),
        voice_greeting=reader.get("VOICE_GREETING") or DEFAULT_VOICE_GREETING,
        voice_name=optional_pattern(
            reader, "VOICE_NAME", _VOICE_NAME, "a Twilio voice name, like Polly.Joanna"
        ),
        voice_language=optional_pattern(
            reader, "VOICE_LANGUAGE", _LANGUAGE, "a language tag, like en-US"
        ),
        sms_reply=reader.get("SMS_REPLY") or DEFAULT_SMS_REPLY,
        call_flow=reader.get("CALL_FLOW"),
        call_policy=tuple((name, reader.get(name)) for name in CALL_POLICY_SETTINGS),
    )


# Settings for voice_url and sms_url (and the status callbacks): only what checking a signature
# and answering with TwiML needs, so nothing about the REST API can break a webhook.
load_webhook_settings = loader(WEBHOOK_SETTINGS, webhook_settings)
