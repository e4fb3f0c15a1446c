"""Serving console/static/: the page, its ES modules, styles and icon, as the app's own files.

Only names made of letters, digits, `-`, `_` and `/`, ending in a known type, are served, and
only from inside console/static/ (no `..`, no other folder). Each answer carries the page's
Content-Security-Policy: everything from this origin and nothing from anywhere else, no inline
script or style, no framing. An ETag lets the browser revalidate instead of downloading again.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from shared.common import routes

STATIC_ROOT = Path(__file__).resolve().parents[2] / "console" / "static"
INDEX = "index.html"
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# What the softphone's SDK (@twilio/voice-sdk 2.18.5, console/static/vendor/, read in its dist
# bundle and README's "Content Security Policy" section) needs beyond 'self':
# - connect-src wss://voice-js.roaming.twilio.com: its signalling WebSocket. The page leaves
#   the Device's `edge` at "roaming" (Twilio picks the nearest edge behind that one name); any
#   other edge would need wss://voice-js.<edge>.twilio.com. During a call the SDK first retries
#   a dropped signalling connection on the call's own edge's name, then falls back to roaming.
# - connect-src https://eventgw.twilio.com and https://eventgw.us1.twilio.com: its call-quality
#   events (Voice Insights), posted to eventgw.twilio.com, then to eventgw.<home>.twilio.com once
#   signalling names the account's home region; the token names none, so us1, Twilio's default.
# - Nothing for its sounds: by default it fetches 15 MP3s (ringtone, DTMF, ...) from
#   sdk.twilio.com when a Device is made; the page gives it tones it synthesises itself as
#   blob: URLs (`sounds`), played through <audio> (`disableAudioContextSounds`), so media-src
#   stays 'self' blob:. A call's audio is a MediaStream (srcObject), which CSP does not govern,
#   and neither does WebRTC's media (ICE/STUN/TURN to Twilio's media servers).
# - No script from elsewhere: the bundle is the app's own file (script-src 'self'); it needs no
#   eval, inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self' wss://voice-js.roaming.twilio.com "
    "https://eventgw.twilio.com https://eventgw.us1.twilio.com; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidated each time (ETag): a deploy shows at once
    # The page takes the function key: after one visit the browser never tries plain http for
    # this host again (httpsOnly's redirect alone leaves the first request open on a hostile
    # network). Browsers ignore it over http (RFC 6797), so a local run is unaffected.
    "Strict-Transport-Security": "max-age=31536000",
}
_NAME = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*\.[a-z]{2,4}")


@lru_cache(maxsize=64)
def _file(name: str) -> tuple[bytes, str] | None:
    """The file's bytes and ETag, read once per process (the package does not change under a
    running app), or None when there is no such file."""
    try:
        path = (STATIC_ROOT / name).resolve()
        if STATIC_ROOT.resolve() not in path.parents or not path.is_file():
            return None
        body = path.read_bytes()
    except OSError:  # a name the file system refuses (a part over 255 bytes): no such file
        return None
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def serve(req: func.HttpRequest) -> func.HttpResponse:
    path = req.route_params.get("path") or ""
    if not path and not urlpath(req).endswith("/"):
        # /api/console -> /api/console/, so the page's relative URLs resolve under it.
        return func.HttpResponse(status_code=308, headers={
            **SECURITY_HEADERS, "Location": f"{routes.path('console')}/"})
    name = path or INDEX
    suffix = Path(name).suffix
    found = _file(name) if _NAME.fullmatch(name) and suffix in TYPES else None
    if found is None:
        return func.HttpResponse("Not found.", status_code=404, mimetype="text/plain",
                                 headers=SECURITY_HEADERS)
    body, etag = found
    headers = {**SECURITY_HEADERS, "ETag": etag}
    if etag in (req.headers.get("if-none-match") or ""):
        return func.HttpResponse(status_code=304, headers=headers)
    return func.HttpResponse(b"" if req.method.upper() == "HEAD" else body, status_code=200,
                             mimetype=TYPES[suffix], headers=headers)


def urlpath(req: func.HttpRequest) -> str:
    return urlsplit(req.url).path
