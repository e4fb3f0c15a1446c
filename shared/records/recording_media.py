"""Fetching a recording's audio from Twilio, for the console's player (GET /api/recordings/...).

Twilio serves a recording's media at `/2010-04-01/Accounts/{AccountSid}/Recordings/{Sid}.mp3`
behind the account's credentials, usually by redirecting to a short-lived address on another
host. Hand-written with aiohttp (already installed for twilio's async client) because twilio's
async HTTP client decodes every body as text, which ruins binary audio, and the twilio library
has no media download of its own. The credentials go to Twilio's API host only: a redirect to
another origin is followed without them, and only to an https one.
"""

from __future__ import annotations

import base64
from urllib.parse import urljoin, urlsplit

from shared.outbound.settings import RestSettings

API_ORIGIN = "https://api.twilio.com"
# A voicemail is at most a few minutes of mono MP3 (about 1 MB a minute at Twilio's rate);
# anything much larger is not one of ours and is not held in memory.
MAX_BYTES = 32 * 1024 * 1024
MAX_REDIRECTS = 3

_origin = API_ORIGIN


class MediaUnavailable(Exception):
    """Twilio could not be asked, or answered something other than the audio or a 404."""


def use_api_origin(origin: str | None) -> None:
    """Fetch from `origin` instead of Twilio's API (the local stand-in; None restores it)."""
    global _origin
    _origin = origin.rstrip("/") if origin else API_ORIGIN


def media_url(account_sid: str, recording_sid: str) -> str:
    return f"{_origin}/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}.mp3"


def followable(url: str, api_scheme: str) -> bool:
    """A redirect is followed to https only (Twilio's media hosts), or, with the API itself on
    plain http (the local stand-in on loopback), to http as well."""
    return urlsplit(url).scheme in {"https", api_scheme}


async def fetch(rest: RestSettings, recording_sid: str) -> bytes | None:
    """The recording's MP3, or None when Twilio has no such recording (deleted, or never)."""
    import aiohttp

    url = media_url(rest.account_sid, recording_sid)
    origin = urlsplit(url)[:2]
    timeout = aiohttp.ClientTimeout(total=rest.http_timeout)
    credentials = f"{rest.rest_username}:{rest.rest_password}".encode()
    auth = {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for _ in range(MAX_REDIRECTS + 1):
                same_origin = urlsplit(url)[:2] == origin
                async with session.get(url, headers=auth if same_origin else None,
                                       allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        url = urljoin(url, response.headers.get("Location", ""))
                        if not followable(url, origin[0]):
                            raise MediaUnavailable("Twilio redirected to a non-https address")
                        continue
                    if response.status == 404:
                        return None
                    if response.status != 200:
                        raise MediaUnavailable(f"Twilio answered {response.status}")
                    body = await response.content.read(MAX_BYTES + 1)
                    if len(body) > MAX_BYTES:
                        raise MediaUnavailable("the recording is larger than a voicemail can be")
                    return body
            raise MediaUnavailable("too many redirects")
    except (aiohttp.ClientError, TimeoutError) as error:
        raise MediaUnavailable(f"Twilio could not be reached ({type(error).__name__})") from None
