"""The TwiML App's voice URL (client_voice): what a call placed from the browser dials.

Twilio requests it, signed, when the console's Device connects, with the Device's `To`. Only a
request for this app's TwiML App (`ApplicationSid` = TWILIO_TWIML_APP_SID) is obeyed: another
app's, or a TwiML App pointed here by someone else, gets a spoken refusal and a hang-up; so does
a call that is not from a browser (`From` not `client:NAME`: a phone number given the TwiML App).
- `To=client:NAME` rings that browser: `<Dial><Client>NAME</Client></Dial>`.
- A phone number is dialled only if make_call would call it (allowed countries, no premium-rate
  or unknown type), from TWILIO_PHONE_NUMBER as the caller ID (a `client:` caller ID is refused
  by Twilio on the phone network): `<Dial callerId=...><Number>...</Number></Dial>`.
- Anything else: the refusal, never a dial and never a 500.
"""

from __future__ import annotations

from shared import webhooks
from shared.browsercalls.settings import load_twiml_app_sid
from shared.common import logs, redact
from shared.common.client_names import CLIENT_PREFIX, is_identity
from shared.common.settings import SettingsError

logger = logs.get_logger(__name__)

FUNCTION = "client_voice"
REFUSED = "That number cannot be called from here. Goodbye."
NOT_SET_UP = "Calls from the browser are not set up for this app. Goodbye."


def _refusal(hook: webhooks.Webhook, text: str) -> str:
    settings = hook.settings
    return webhooks.twiml.say(text, settings.voice_name, settings.voice_language, hang_up=True)


def answer(hook: webhooks.Webhook) -> str:
    from twilio.twiml.voice_response import Dial, VoiceResponse

    sid = redact.sid(hook.param("CallSid"))
    try:
        app_sid = load_twiml_app_sid()
    except SettingsError as error:
        logger.error("%s CallSid=%s outcome=refused reason=settings: %s", FUNCTION, sid,
                     error.describe())
        return _refusal(hook, NOT_SET_UP)
    if hook.param("ApplicationSid") != app_sid:
        logger.warning("%s CallSid=%s outcome=refused reason=not this app's TwiML App", FUNCTION,
                       sid)
        return _refusal(hook, NOT_SET_UP)
    caller = hook.param("From") or ""
    if not (caller.startswith(CLIENT_PREFIX) and is_identity(caller[len(CLIENT_PREFIX):])):
        # A phone number given this TwiML App (Twilio's console offers it by name) would have
        # its callers' calls dialled on to the number they rang, or any To: only a browser's.
        logger.warning("%s CallSid=%s outcome=refused reason=not a call from a browser",
                       FUNCTION, sid)
        return _refusal(hook, NOT_SET_UP)
    to = (hook.param("To") or "").strip()
    response = VoiceResponse()
    if to.startswith(CLIENT_PREFIX):
        name = to[len(CLIENT_PREFIX):]
        if not is_identity(name):
            logger.warning("%s CallSid=%s outcome=refused reason=not a client name", FUNCTION, sid)
            return _refusal(hook, REFUSED)
        dial = Dial()
        dial.client(name)
        response.append(dial)
        logger.info("%s CallSid=%s outcome=dialled to=client", FUNCTION, sid)
        return str(response.to_xml())
    called = _allowed(to, sid)
    if called is None:
        return _refusal(hook, REFUSED)
    number, caller_id = called
    dial = Dial(caller_id=caller_id)
    dial.number(number)
    response.append(dial)
    logger.info("%s CallSid=%s outcome=dialled to=%s", FUNCTION, sid,
                redact.phone_number(number))
    return str(response.to_xml())


def _allowed(to: str, sid: str) -> tuple[str, str] | None:
    """(the number, the caller ID) when make_call would place this call, else None (logged)."""
    from shared.outbound import answers, calls
    from shared.outbound.settings import load_call_settings

    try:
        request = calls.parse({"to": to}, load_call_settings())
    except SettingsError as error:
        logger.error("%s CallSid=%s outcome=refused reason=settings: %s", FUNCTION, sid,
                     error.describe())
        return None
    except answers.REFUSALS as refusal:
        logger.warning("%s CallSid=%s outcome=refused reason=%s", FUNCTION, sid,
                       redact.phone_numbers_in(str(refusal)))
        return None
    return request.to, request.from_
