"""GET /api/voice_token: a Voice access token for the console's softphone (function key, and the
signed-in user when CONSOLE_REQUIRE_SIGN_IN is on).

The token is twilio's `AccessToken` with a `VoiceGrant`: signed with the API key (never the auth
token), for one identity, allowed to place calls only through this app's TwiML App (whose voice
URL applies make_call's policy to every number: client_voice) and to receive calls, and valid
for an hour at most; the page asks for a new one before it runs out. A stolen token can do no
more than the console's own Device for that hour: what it dials passes the same policy.
"""

from __future__ import annotations

import hashlib
import re

import azure.functions as func

from shared.browsercalls.settings import TokenSettings, load_token_settings
from shared.common import logs, responses
from shared.common.client_names import is_identity
from shared.common.settings import SettingsError, load_app_service_auth
from shared.console import signin

logger = logs.get_logger(__name__)

TTL_SECONDS = 3600  # Twilio allows up to 24 h; an hour bounds what a stolen token can do
_NOT_IDENTITY = re.compile(r"[^A-Za-z0-9_]+")
OWN_PREFIX = "user_"  # an identity of a user's own, made from a digest of their principal ID


def identity(req: func.HttpRequest, settings: TokenSettings) -> str:
    """The signed-in user (App Service authentication's principal name, made into what Twilio
    takes as an identity), else CONSOLE_CLIENT_IDENTITY.

    A signed-in user whose name cannot be written that way without losing letters (a name with
    letters outside ASCII: "Иван@contoso.com" and "Пётр@contoso.com" both left "contoso_com";
    one longer than Twilio takes; a service principal with no name), or whose name would be the
    shared identity or look like one of these, gets one of their own: `user_` and a digest of
    their principal ID. Never the shared one, nor another user's: every browser signed in as an
    identity rings for its calls and can answer them."""
    if not load_app_service_auth():
        return settings.identity
    name = (req.headers.get("x-ms-client-principal-name") or "").strip()
    made = _NOT_IDENTITY.sub("_", name).strip("_")
    # is_identity holds it to Twilio's 121 characters: a longer name is not cut to fit.
    if (name.isascii() and is_identity(made) and made.lower() != settings.identity.lower()
            and not made.lower().startswith(OWN_PREFIX)):
        return made
    principal = (req.headers.get(signin.PRINCIPAL_HEADER) or "").strip() or name
    if principal:
        return OWN_PREFIX + hashlib.sha256(principal.encode()).hexdigest()[:16]
    return settings.identity


async def handle(req: func.HttpRequest) -> func.HttpResponse:
    from twilio.jwt.access_token import AccessToken
    from twilio.jwt.access_token.grants import VoiceGrant

    if refused := signin.refusal(req):
        return refused
    try:
        settings = load_token_settings()
    except SettingsError as error:
        logger.error("voice_token outcome=failed reason=settings: %s", error.describe())
        return responses.json_error(
            500, f"Calls from the browser are not set up: {error.describe()}.",
            settings=error.names)
    who = identity(req, settings)
    token = AccessToken(settings.account_sid, settings.api_key, settings.api_secret,
                        identity=who, ttl=TTL_SECONDS)
    token.add_grant(VoiceGrant(outgoing_application_sid=settings.twiml_app_sid,
                               incoming_allow=True))
    # Not the identity itself: a signed-in user's is made from their sign-in name.
    logger.info("voice_token outcome=issued for=%s ttl=%d",
                "configured" if who == settings.identity else "signed-in", TTL_SECONDS)
    return responses.json_body({"token": token.to_jwt(), "identity": who,
                                "ttl_seconds": TTL_SECONDS}, 200,
                               headers={"Cache-Control": "no-store"})
