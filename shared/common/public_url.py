"""Which origin is this app's public one: what we send to Twilio, and what Twilio signed.

Trust, in this order:
1. `PUBLIC_BASE_URL`, when set: the only origin, for callbacks and signatures alike (custom
   domains, Front Door, API Management, a tunnel such as ngrok).
2. Else `WEBSITE_HOSTNAME`, which App Service and Functions set to the app's default host name
   on Azure: `https://` + it. A request header cannot widen this, so a signature Twilio made for
   another app on the same account is not accepted here.
3. Else, only on positive evidence of a local run (the loopback `WEBSITE_HOSTNAME` that
   `func start` and the local host set), the signature check falls back to the origin the
   request names: its Host, or the last hop of `X-Forwarded-Host` (the one the nearest proxy
   appended). A loopback Host on the request is no such evidence: a client writes its Host,
   and a proxy in front of a deployment often rewrites it to localhost. Nothing is sent to
   Twilio on this footing: callbacks need 1 or 2.
4. Else (no setting names the origin, and nothing says the run is local: a deployment that
   lacks both settings) no origin is trusted and every webhook is refused, naming
   PUBLIC_BASE_URL: the request's own headers could otherwise make another app's signatures
   valid here.

The origin written into anything sent to Twilio (a call's `Url`, status callbacks) never comes
from a request header: whoever can call make_call could otherwise point Twilio at a host of
their own that answers `<Dial>` to any premium number.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit

import azure.functions as func

# What a Host header may hold: a host name or an IP literal, and an optional port (ASCII only).
# Underscores too: not in DNS host names, but in the names a reverse proxy forwards (a Docker
# Compose service, `proxy_pass http://twilio_app`), which URLs and Python's urlsplit accept.
HOST = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}"
    r"[A-Za-z0-9_])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)


class UnparsableUrl(ValueError):
    """The request's URL (built by the host from its Host header) does not parse."""


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, with or without a port: a local run, not a public app."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def configured_origin(public_base_url: str | None, website_hostname: str | None) -> str | None:
    """The origin to trust and to hand to Twilio, from settings alone (1 and 2 above)."""
    if public_base_url:
        return public_base_url
    if website_hostname and not is_loopback(website_hostname):
        return f"https://{website_hostname.lower()}"
    return None


def _last(value: str | None) -> str | None:
    """The last hop of a comma-separated forwarding header: the one the nearest proxy added.
    Earlier hops came from further out, the first of them from the client, who can write
    anything there."""
    if not value:
        return None
    return value.split(",")[-1].strip() or None


def _forwarded(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    proto = _last(headers.get("x-forwarded-proto"))
    if proto is not None:
        proto = proto.lower()
        if proto not in ("http", "https"):
            proto = None
    if proto is None and headers.get("x-arr-ssl"):
        proto = "https"  # App Service's marker of a request that arrived over TLS
    host = _last(headers.get("x-forwarded-host")) or _last(headers.get("disguised-host"))
    if host is not None and not HOST.fullmatch(host):
        host = None
    return proto, host


def _split(req: func.HttpRequest) -> SplitResult:
    # The host builds the URL from the Host header, so a malformed URL means a malformed Host;
    # it is named in the refusal (shortened; shared.common.logs escapes what it cannot print).
    parts = _split_url(req.url)
    if parts is None:
        host = (req.headers.get("host") or "")[:80]
        raise UnparsableUrl(f"request URL does not parse (Host '{host}')")
    return parts


@lru_cache(maxsize=256)
def _split_url(url: str) -> SplitResult | None:
    """The URL's parts, None when it does not parse; remembered, as a webhook's URL is the same
    from request to request (its host, route and query: make_call's message at most)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.fragment or not HOST.fullmatch(parts.netloc):
        # A Host header like "myapp.example.net/api/sms_url#" turns the rest of the URL into a
        # fragment and names another route: nothing about such a request can be trusted.
        return None
    return parts


def request_origins(req: func.HttpRequest, local_run: bool) -> list[str] | None:
    """Origins a local request may have been sent to (3 above), most likely first; None when
    the settings do not say this is a local run (`local_run`; 4 above).

    The scheme is tried both ways: TLS often ends before the worker, and a wrong scheme cannot
    make a forged signature pass. Raises UnparsableUrl.
    """
    if not local_run:
        return None
    seen = _split(req)
    proto, forwarded_host = _forwarded(req.headers)
    schemes = list(dict.fromkeys([proto or seen.scheme, "https", "http"]))
    hosts = [h for h in (forwarded_host, seen.netloc) if h]
    return list(dict.fromkeys(f"{scheme}://{host}" for host in hosts for scheme in schemes))


def path_and_query(req: func.HttpRequest) -> tuple[str, str]:
    """The path and query exactly as received: re-encoding them would break the signature.
    Raises UnparsableUrl."""
    parts = _split(req)
    return parts.path or "/", parts.query
