"""The public URL of a request: the one Twilio used, which is not always the one the worker sees.

On Azure, TLS ends at the front end, so the worker may see `http://`; custom domains, Front Door
and API Management change the host. `PUBLIC_BASE_URL`, when set, is the only origin trusted. When
it is not, the origin is rebuilt from the forwarding headers the front ends add.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import azure.functions as func

# What a Host header may hold: a DNS name or an IP literal, and an optional port.
_HOST = re.compile(
    r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,62}(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)


def _first(value: str | None) -> str | None:
    """The first hop of a comma-separated forwarding header, the one the client talked to."""
    if not value:
        return None
    return value.split(",")[0].strip() or None


def _forwarded_origin(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    proto = _first(headers.get("x-forwarded-proto"))
    if proto is not None:
        proto = proto.lower()
        if proto not in ("http", "https"):
            proto = None
    if proto is None and headers.get("x-arr-ssl"):
        proto = "https"  # App Service's marker of a request that arrived over TLS
    host = _first(headers.get("x-forwarded-host")) or _first(headers.get("disguised-host"))
    if host is not None and not _HOST.fullmatch(host):
        host = None
    return proto, host


def request_origins(req: func.HttpRequest) -> list[str]:
    """Origins the request may have been sent to, most likely first, without duplicates."""
    seen = urlsplit(req.url)
    proto, host = _forwarded_origin(req.headers)
    candidates = [
        f"{proto or seen.scheme}://{host or seen.netloc}",
        f"{seen.scheme}://{seen.netloc}",
        # The worker may see http for a request that reached the front end over https.
        f"https://{seen.netloc}",
    ]
    return list(dict.fromkeys(candidates))


def origin(req: func.HttpRequest, public_base_url: str | None) -> str:
    """The origin to hand to Twilio for callbacks into this app."""
    return public_base_url or request_origins(req)[0]


def path_and_query(req: func.HttpRequest) -> tuple[str, str]:
    """The path and query exactly as received: re-encoding them would break the signature."""
    parts = urlsplit(req.url)
    return parts.path or "/", parts.query
