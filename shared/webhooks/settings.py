"""The webhooks' settings (voice_url, sms_url and the status callbacks): only what checking a
signature and answering with TwiML needs, so nothing about the REST API can break a webhook."""

from __future__ import annotations

from typing import Any

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

# What checking a signature needs: the secrets Twilio signs with and the public origin it signs
# (with the platform's WEBSITE_HOSTNAME, which every loader reads). When one of these is broken no
# request can be proven genuine; when another is, a webhook checks the signature with these alone.
SIGNING_SETTINGS = (
    "TWILIO_AUTH_TOKEN",
    "TWILIO_AUTH_TOKEN_SECONDARY",
    "TWILIO_SHARED_KEY_SECRET",
    "TWILIO_SHARED_KEY_SECRET_SECONDARY",
    "PUBLIC_BASE_URL",
)

# What the text webhook (sms_url) reads: nothing about calls, so that a call's
# setting (a malformed VOICE_NAME, say) never keeps an inbound STOP from being honoured.
TEXT_WEBHOOK_SETTINGS = (*SIGNING_SETTINGS, "SMS_REPLY")

# What the status callbacks read: the call flow whose voicemails recording_status notifies about,
# nothing a caller hears, so that a call's voice setting never keeps a callback from being kept.
CALLBACK_SETTINGS = (*SIGNING_SETTINGS, "CALL_FLOW")

WEBHOOK_SETTINGS = (
    *SIGNING_SETTINGS,
    "VOICE_GREETING",
    "VOICE_NAME",
    "VOICE_LANGUAGE",
    "SMS_REPLY",
    "CALL_FLOW",
    *CALL_POLICY_SETTINGS,
)


class WebhookSettings:
    """What the Twilio webhooks need (a text webhook's holds the calls' defaults)."""

    # Slotted, not a NamedTuple: on a webhook's first call (docs/benchmark.md, cold start).
    __slots__ = ("auth_tokens", "call_flow", "call_policy", "local_run", "shared_key_secrets",
                 "sms_reply", "trusted_origin", "voice_greeting", "voice_language", "voice_name")

    def __init__(
        self,
        auth_tokens: tuple[str, ...],
        shared_key_secrets: tuple[str, ...],
        trusted_origin: str | None,
        local_run: bool,
        voice_greeting: str = DEFAULT_VOICE_GREETING,
        voice_name: str | None = None,
        voice_language: str | None = None,
        sms_reply: str = DEFAULT_SMS_REPLY,
        call_flow: str | None = None,
        call_policy: tuple[tuple[str, str | None], ...] = (),
    ) -> None:
        self.auth_tokens = auth_tokens
        # The secrets of the SharedKeys a Twilio Webhook Setting signs with (empty: none is set
        # up); a webhook carrying X-Twilio-Webhooks-Signature-Settings is checked against these.
        self.shared_key_secrets = shared_key_secrets
        # PUBLIC_BASE_URL, else https://WEBSITE_HOSTNAME on Azure, else None.
        self.trusted_origin = trusted_origin
        # WEBSITE_HOSTNAME is a loopback one, as `func start` sets it: a local run, where a
        # request's own host and forwarding headers may name the origin Twilio signed
        # (shared.common.public_url).
        self.local_run = local_run
        self.voice_greeting = voice_greeting
        self.voice_name = voice_name
        self.voice_language = voice_language
        self.sms_reply = sms_reply
        # CALL_FLOW: the call-flow file voice_url walks callers through (shared.callflows);
        # None: voice_url says VOICE_GREETING.
        self.call_flow = call_flow
        # CALL_POLICY_SETTINGS as they are, not judged (the number library would be needed):
        # which checked flow a call walks (shared.callflows.loading keeps one per distinct value).
        self.call_policy = call_policy


def _signing(reader: Reader) -> dict[str, Any]:
    """The SIGNING_SETTINGS read: WebhookSettings' first four fields."""
    token = reader.required("TWILIO_AUTH_TOKEN", ": webhook signatures cannot be checked")
    secondary = reader.get("TWILIO_AUTH_TOKEN_SECONDARY")
    shared_keys = (
        reader.get("TWILIO_SHARED_KEY_SECRET"),
        reader.get("TWILIO_SHARED_KEY_SECRET_SECONDARY"),
    )
    return {
        "auth_tokens": tuple(t for t in (token, secondary) if t),
        "shared_key_secrets": tuple(k for k in shared_keys if k),
        "trusted_origin": public_origin(reader),
        "local_run": local_run(reader),
    }


def signing_settings(reader: Reader) -> WebhookSettings:
    """The SIGNING_SETTINGS read, every other webhook setting left at its default."""
    return WebhookSettings(**_signing(reader))


def text_webhook_settings(reader: Reader) -> WebhookSettings:
    """The TEXT_WEBHOOK_SETTINGS read, the calls' settings left at their defaults."""
    return WebhookSettings(**_signing(reader),
                           sms_reply=reader.get("SMS_REPLY") or DEFAULT_SMS_REPLY)


def callback_settings(reader: Reader) -> WebhookSettings:
    """The CALLBACK_SETTINGS read, the rest left at their defaults."""
    return WebhookSettings(**_signing(reader), call_flow=reader.get("CALL_FLOW"))


def webhook_settings(reader: Reader) -> WebhookSettings:
    return WebhookSettings(
        **_signing(reader),
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


# Settings for the call webhooks (voice_url, call_flow, client_voice):
# only what checking a signature and answering with TwiML needs, so nothing about the REST API
# can break a webhook.
load_webhook_settings = loader(WEBHOOK_SETTINGS, webhook_settings)
# The text webhooks' (sms_url), and the status callbacks' (call_status, message_status,
# recording_status).
load_text_webhook_settings = loader(TEXT_WEBHOOK_SETTINGS, text_webhook_settings)
load_callback_settings = loader(CALLBACK_SETTINGS, callback_settings)
# The signing ones alone: what a webhook checks a request with when another setting is malformed
# (shared.webhooks.handler), so that it still refuses a forged request and answers a genuine one.
load_signing_settings = loader(SIGNING_SETTINGS, signing_settings)
