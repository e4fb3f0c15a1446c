"""Webhooks: what Twilio sends the app, checked and answered.

Entry point: `respond` (a webhook answered with TwiML: voice_url, sms_url) and `acknowledge` (a
status callback, answered 204) in `handler`, re-exported here with `Webhook`, `Retry`, the TwiML
builders (`twiml`) and `clean_text`. A request is answered only once its X-Twilio-Signature
(`signature`) holds for this app's own origin. Settings: `settings` (the auth tokens, the
greeting and reply). To change what happens when a call or a text comes in, edit the responder
in voice_url/ or sms_url/ and the builders in `twiml`.
"""

from shared.webhooks import twiml
from shared.webhooks.handler import Responder, Retry, Webhook, acknowledge, respond
from shared.webhooks.speech import clean_text

__all__ = ["Responder", "Retry", "Webhook", "acknowledge", "clean_text", "respond", "twiml"]
