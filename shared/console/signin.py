"""Sign-in for the console's functions: with CONSOLE_REQUIRE_SIGN_IN=true, every function the
console reads or acts through (the records, voicemails, broadcasts, opt-outs, make_call,
send_sms) also requires a user signed in through App Service Authentication, on top of the
Functions key (docs/console-sign-in.md).

App Service Authentication is configured to let unsigned requests through, so that Twilio's
webhooks stay reachable (they are signed by Twilio instead); the platform then names the
signed-in user in X-MS-CLIENT-PRINCIPAL-ID and removes any such header a client sent. That
header is believed only while the platform says authentication is on (WEBSITE_AUTH_ENABLED):
with it off, whoever calls could write it, so a required sign-in with authentication off
refuses everything and says which setting is wrong.
"""

from __future__ import annotations

import azure.functions as func

from shared.common import logs, responses
from shared.common.settings import SettingsError
from shared.console.settings import load_sign_in_settings

logger = logs.get_logger(__name__)

PRINCIPAL_HEADER = "x-ms-client-principal-id"


def refusal(req: func.HttpRequest) -> func.HttpResponse | None:
    """The answer that refuses `req` for want of a sign-in, or None when it may go on."""
    try:
        settings = load_sign_in_settings()
    except SettingsError as error:
        logger.error("sign-in outcome=failed reason=settings: %s", error.describe())
        return responses.not_configured(error)
    if not settings.required:
        return None
    if not settings.platform_auth:
        logger.error("sign-in outcome=refused reason=CONSOLE_REQUIRE_SIGN_IN is true but App "
                     "Service authentication is off")
        return responses.json_error(
            500, "CONSOLE_REQUIRE_SIGN_IN is true but App Service authentication is off "
            "(WEBSITE_AUTH_ENABLED): nobody can be recognised as signed in, so nothing is "
            "answered. Turn authentication on, or set CONSOLE_REQUIRE_SIGN_IN to false.",
            settings=["CONSOLE_REQUIRE_SIGN_IN"])
    if not (req.headers.get(PRINCIPAL_HEADER) or "").strip():
        return responses.json_error(
            401, "Sign in first: this app requires a signed-in user as well as the key "
            "(open /.auth/login/aad?post_login_redirect_uri=/api/console/ in this browser).")
    return None
