"""Send a signed Twilio webhook to the app: the Python user's `twilio webhook:invoke`.

    python -m devhost.simulate voice
    python -m devhost.simulate sms --body "hello" --from +14155550100
    python -m devhost.simulate voice --port 7072 --method GET
    python -m devhost.simulate voice --url https://abc.ngrok.app/api/voice_url --param Digits=1
    python -m devhost.simulate call-status --sid CA... --status ringing
    python -m devhost.simulate message-status --sid SM... --status undelivered \
        --param ErrorCode=30007

By default it goes to the local host on the port scripts/start.sh serves on: Host.LocalHttpPort
of local.settings.json, else 7071 (`--port` for a host started with `--port N`). The form
carries the fields Twilio sends (voice: CallSid, CallStatus, Caller, ...; SMS: MessageSid, Body,
NumMedia, ...), signed with X-Twilio-Signature exactly as Twilio signs it (twilio's
RequestValidator over the URL and the form), with the auth token from the environment or
local.settings.json. `--method GET` sends them as a number configured for HTTP GET makes Twilio
send them: in the query string, the signature over the full URL and no body parameters. It
prints the status and the TwiML, and exits non-zero unless 2xx.
Standard library only for HTTP, so the simulator adds no dependency. Neither the auth token nor
the signature is ever printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.message import Message
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from devhost import settings as local_settings
from devhost.appconfig import AppConfigError

KINDS = {
    "voice": "voice_url",
    "sms": "sms_url",
    "call-status": "call_status",
    "message-status": "message_status",
}
STATUS_KINDS = {"call-status": "completed", "message-status": "delivered"}  # default statuses
# A call's progress events in order: SequenceNumber counts them from 0, per call.
CALL_SEQUENCE = {"initiated": 0, "ringing": 1, "in-progress": 2}
METHODS = ("POST", "GET")  # the two a Twilio number's webhook can be configured with
DEFAULT_HOST = "127.0.0.1"  # where devhost.server listens (and func start answers)
API_VERSION = "2010-04-01"
USER_AGENT = "TwilioProxy/1.1"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_FROM = "+14155550123"  # a caller, not the app's own number of the docs (+14155550100)
DEFAULT_TO = "+15005550006"
DEFAULT_SMS_BODY = "Ahoy from the devhost simulator!"
TOKEN_NAME = "TWILIO_AUTH_TOKEN"  # noqa: S105 - the setting's name, not a token
SHARED_KEY_NAME = "TWILIO_SHARED_KEY_SECRET"
TIMEOUT = 20.0

# Where the numbers "are", as Twilio's lookup would report them (fixed: tests compare them).
_FROM_PLACE = {"City": "SAN FRANCISCO", "State": "CA", "Zip": "94105", "Country": "US"}
_TO_PLACE = {"City": "", "State": "", "Zip": "", "Country": "US"}


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _places(*prefixes: str, place: Mapping[str, str], number: str) -> dict[str, str]:
    """Twilio's lookup of where `number` is: its country as Twilio reports it (FromCountry, the
    app's reply policy reads it), and the fixed place's city for a US number; nothing for what
    is not a phone number (a short code, a name), as Twilio sends nothing it could not find."""
    import phonenumbers  # dev-only code: the simulator may load the number library

    try:
        country = phonenumbers.region_code_for_number(phonenumbers.parse(number, None)) or ""
    except phonenumbers.NumberParseException:
        country = ""
    if not country:
        return {}
    found = dict(place) if country == "US" else {"City": "", "State": "", "Zip": ""}
    found["Country"] = country
    return {f"{p}{k}": v for p in prefixes for k, v in found.items()}


def voice_form(account_sid: str, from_: str, to: str) -> dict[str, str]:
    """An inbound call's webhook form, field for field as Twilio sends it."""
    form = {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "CallSid": _sid("CA"),
        "CallStatus": "ringing",
        "CallToken": secrets.token_urlsafe(96),
        "Called": to,
        "Caller": from_,
        "Direction": "inbound",
        "From": from_,
        "To": to,
    }
    form |= _places("From", "Caller", place=_FROM_PLACE, number=from_)
    form |= _places("To", "Called", place=_TO_PLACE, number=to)
    return form


def sms_form(account_sid: str, from_: str, to: str, body: str) -> dict[str, str]:
    """An inbound SMS's webhook form; the three SIDs are the same message, as from Twilio."""
    message_sid = _sid("SM")
    form = {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "Body": body,
        "From": from_,
        "MessageSid": message_sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": message_sid,
        "SmsSid": message_sid,
        "SmsStatus": "received",
        "To": to,
    }
    form |= _places("From", place=_FROM_PLACE, number=from_)
    form |= _places("To", place=_TO_PLACE, number=to)
    return form


def call_status_form(
    account_sid: str, from_: str, to: str, sid: str | None, status: str
) -> dict[str, str]:
    """A call status callback as Twilio POSTs it to make_call's StatusCallback."""
    from email.utils import formatdate

    form = {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "CallSid": sid or _sid("CA"),
        "CallStatus": status,
        "CallbackSource": "call-progress-events",
        "Direction": "outbound-api",
        "From": from_,
        "To": to,
        "SequenceNumber": str(CALL_SEQUENCE.get(status, 3)),
        "Timestamp": formatdate(usegmt=False),
    }
    if status == "completed":
        form |= {"CallDuration": "12", "Duration": "1"}
    return form


def message_status_form(
    account_sid: str, from_: str, to: str, sid: str | None, status: str
) -> dict[str, str]:
    """A message status callback as Twilio POSTs it to send_sms's StatusCallback."""
    import datetime

    message_sid = sid or _sid("SM")
    form = {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "From": from_,
        "MessageSid": message_sid,
        "MessageStatus": status,
        "SmsSid": message_sid,
        "SmsStatus": status,
        "To": to,
    }
    if status in ("delivered", "undelivered"):
        form["RawDlrDoneDate"] = datetime.datetime.now(datetime.UTC).strftime("%y%m%d%H%M")
    return form


@dataclass(frozen=True)
class Webhook:
    """A ready-to-send webhook: where, what headers (signature included) and the form body.

    `params` are Twilio's fields: the form body of a POST, the query string of a GET (already
    in `url` and `signed_url`, and then not signed as parameters: see `signed_params`).
    """

    url: str
    headers: dict[str, str]
    params: dict[str, str]
    body: bytes = field(repr=False)
    signed_url: str = ""
    method: str = "POST"

    @property
    def signed_params(self) -> dict[str, str]:
        """The parameters the signature covers besides the URL: none for a GET, as Twilio."""
        return {} if self.method == "GET" else self.params

    def __repr__(self) -> str:  # the signature is a credential-derived value: keep it out
        return f"Webhook({self.method} url={self.url!r}, params={len(self.params)} fields)"


def signature(
    auth_token: str, url: str, params: Mapping[str, str], algorithm: str | None = None
) -> str:
    """X-Twilio-Signature, computed by the twilio library as Twilio computes it (with a
    SharedKey's secret in place of the auth token, and its algorithm, for a Webhook Rule)."""
    from twilio.request_validator import RequestValidator

    return RequestValidator(auth_token).compute_signature(url, dict(params), algorithm)


@dataclass(frozen=True)
class SharedKey:
    """A Twilio SharedKey a Webhook Setting signs with: its secret, id and algorithm."""

    secret: str = field(repr=False)
    key_id: str = field(default_factory=lambda: "webhooks_sharedkey_" + uuid.uuid4().hex[:26])
    algorithm: str = "HMAC_SHA256"

    @property
    def settings_header(self) -> str:
        """X-Twilio-Webhooks-Signature-Settings, as Twilio sends it."""
        return f"key={self.key_id},algorithm={self.algorithm}"


def with_query(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` appended to its query string, as Twilio builds a GET webhook URL."""
    if not params:
        return url
    separator = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    return f"{url}{separator}{urlencode(params)}"


def build(
    kind: str,
    url: str,
    auth_token: str,
    *,
    body: str | None = None,
    from_: str = DEFAULT_FROM,
    to: str = DEFAULT_TO,
    account_sid: str | None = None,
    params: Mapping[str, str] | None = None,
    sign_url: str | None = None,
    method: str = "POST",
    sid: str | None = None,
    status: str | None = None,
    shared_key: SharedKey | None = None,
) -> Webhook:
    """A signed webhook of `kind` (voice, sms, call-status, message-status) for `url`.

    `sign_url` is the URL Twilio would have signed when it differs from where the request goes
    (PUBLIC_BASE_URL behind ngrok); it defaults to `url`. `params` adds or overrides fields.
    `method` "GET" puts the fields in the query of both URLs and signs the full URL alone.
    `sid` and `status` pick the call or message a status callback is about, and its status.
    `shared_key` signs it as a Webhook Rule would (with that key, not `auth_token`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, not {method!r}")
    account = account_sid or _sid("AC")
    if kind in STATUS_KINDS:
        status_form = call_status_form if kind == "call-status" else message_status_form
        form = status_form(account, from_, to, sid, status or STATUS_KINDS[kind])
    elif kind == "voice":
        form = voice_form(account, from_, to)
        if body is not None:
            form["Body"] = body
    else:
        form = sms_form(account, from_, to, DEFAULT_SMS_BODY if body is None else body)
    form |= dict(params or {})
    signed = sign_url or url
    if method == "GET":
        unsigned = Webhook(url=with_query(url, form), headers={}, params=form, body=b"",
                           signed_url=with_query(signed, form), method=method)
    else:
        unsigned = Webhook(url=url, headers={"Content-Type": FORM_CONTENT_TYPE}, params=form,
                           body=urlencode(form).encode("ascii"), signed_url=signed)
    return _with_twilio_headers(unsigned, auth_token, shared_key)


def _with_twilio_headers(
    hook: Webhook, auth_token: str, shared_key: SharedKey | None = None
) -> Webhook:
    """`hook` with the headers Twilio adds, the signature over what Twilio signs for its method."""
    headers = hook.headers | {
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
    }
    secret, algorithm = auth_token, None
    if shared_key is not None:
        secret, algorithm = shared_key.secret, shared_key.algorithm
        headers["X-Twilio-Webhooks-Signature-Settings"] = shared_key.settings_header
    headers["X-Twilio-Signature"] = signature(
        secret, hook.signed_url, hook.signed_params, algorithm
    )
    return replace(hook, headers=headers)


@dataclass(frozen=True)
class Reply:
    """The answer; `headers` is case-insensitive and keeps repeated headers (get_all)."""

    status: int
    reason: str
    headers: Message
    body: bytes


def send(webhook: Webhook, timeout: float = TIMEOUT) -> Reply:
    """Send the webhook with urllib; an HTTP error status is a Reply, not an exception."""
    request = urllib.request.Request(  # noqa: S310 - the URL is the user's own choice
        webhook.url, data=webhook.body if webhook.method == "POST" else None,
        headers=webhook.headers, method=webhook.method,
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return Reply(response.status, response.reason, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, str(error.reason), error.headers, error.read())


def _settings_values(
    found: local_settings.LocalSettings | None,
) -> tuple[dict[str, str], str]:
    """(values, where they came from) — the environment first, then local.settings.json."""
    values = dict(found.values) if found else {}
    merged = {k: v for k, v in values.items() if v}
    merged |= {k: v for k, v in os.environ.items() if v}
    if os.environ.get(TOKEN_NAME):
        source = "the environment"
    elif merged.get(TOKEN_NAME):
        source = local_settings.FILE_NAME
    else:
        source = ""
    return merged, source


def _no_secret_message(
    name: str, found: local_settings.LocalSettings | None, app_root: Path
) -> str:
    """Why there is nothing to sign with: the file is missing, or it lacks `name` (or leaves it
    empty, as local.settings.json.example does); only a missing file is called missing."""
    where = f"set it in the environment or in {local_settings.FILE_NAME}"
    if found is None:
        return f"no {name} to sign with: {where} ({local_settings.missing_message(app_root)})"
    state = "is empty" if name in found.values else "is not set"
    return f"no {name} to sign with: it {state} in {found.path} and in the environment; {where}"


def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param expects KEY=VALUE, got {pair!r}")
        params[key] = value
    return params


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devhost.simulate",
        description="Send a signed Twilio webhook (voice, SMS, or a call or message status "
        "callback) and print the answer.",
    )
    parser.add_argument("kind", choices=sorted(KINDS), help="which webhook to send")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help=f"where to send it (default http://{DEFAULT_HOST}:PORT/"
                        "api/voice_url or sms_url)")
    target.add_argument("--port", type=int, help="the local host's port (default: "
                        "Host.LocalHttpPort in local.settings.json, else "
                        f"{local_settings.DEFAULT_PORT}, as scripts/start.sh picks it)")
    parser.add_argument("--method", type=str.upper, choices=METHODS, default="POST",
                        help="how Twilio calls the webhook: POST (form body, the default) or "
                        "GET (parameters in the query string)")
    parser.add_argument("--sign-url", help="the URL to sign, when Twilio would have called "
                        "another (default: PUBLIC_BASE_URL plus the path if set, else --url)")
    parser.add_argument("--body", help="the SMS text (Body)")
    parser.add_argument("--sid", help="status callbacks: the CallSid or MessageSid (default: "
                        "a new one; use the sid make_call or send_sms answered)")
    parser.add_argument("--status", help="status callbacks: CallStatus (default completed) or "
                        "MessageStatus (default delivered)")
    parser.add_argument("--from", dest="from_", default=DEFAULT_FROM, help="caller / sender")
    parser.add_argument("--to", help="the Twilio number called or texted "
                        "(default TWILIO_PHONE_NUMBER, else +15005550006)")
    parser.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="add or override a form field; repeatable")
    parser.add_argument("--app-root", type=Path, default=Path.cwd(),
                        help="where local.settings.json is (default: current directory)")
    parser.add_argument("--shared-key", action="store_true",
                        help=f"sign with {SHARED_KEY_NAME} and HMAC-SHA256, as a Twilio Webhook "
                        "Rule with a SharedKey does, instead of the auth token")
    parser.add_argument("--walk", metavar="CHOICES",
                        help="voice with a call flow (CALL_FLOW): then follow the TwiML as Twilio "
                        "would, one comma-separated choice per step: digits or silence at a menu, "
                        "a DialCallStatus at a dial, record:SECONDS[:TRANSCRIPTION] or empty at a "
                        "voicemail (devhost/flowwalk.py)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT)
    return parser.parse_args(argv)


def target_url(
    kind: str, url: str | None, port: int | None, found: local_settings.LocalSettings | None
) -> str:
    """--url, else the local host's route on --port or the port the host itself would pick
    from the same local.settings.json (so it is the host scripts/start.sh started)."""
    if url:
        return url
    port = local_settings.http_port(found) if port is None else port
    return f"http://{DEFAULT_HOST}:{port}/api/{KINDS[kind]}"


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 for a 2xx answer, 1 for any other status, 2 when nothing could be sent."""
    args = _parse_args(argv)
    try:
        params = _parse_params(args.param)
        found = local_settings.read(args.app_root)
        values, source = _settings_values(found)
    except (ValueError, AppConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # The secret it signs with: the auth token, or with --shared-key the SharedKey's secret.
    needed = SHARED_KEY_NAME if args.shared_key else TOKEN_NAME
    if not values.get(needed):
        print(f"error: {_no_secret_message(needed, found, args.app_root)}", file=sys.stderr)
        return 2
    token = values.get(TOKEN_NAME, "")
    shared_key = SharedKey(values[SHARED_KEY_NAME]) if args.shared_key else None
    url = target_url(args.kind, args.url, args.port, found)
    sign_url = args.sign_url
    public = values.get("PUBLIC_BASE_URL", "").rstrip("/")
    if sign_url is None and public and not url.startswith(public):
        # The app trusts only PUBLIC_BASE_URL: Twilio would have signed the public URL.
        target = urlsplit(url)
        sign_url = public + target.path + (f"?{target.query}" if target.query else "")
    webhook = build(
        args.kind, url, token, body=args.body, from_=args.from_,
        to=args.to or values.get("TWILIO_PHONE_NUMBER") or DEFAULT_TO,
        account_sid=values.get("TWILIO_ACCOUNT_SID"), params=params, sign_url=sign_url,
        method=args.method, sid=args.sid, status=args.status, shared_key=shared_key,
    )
    signed_note = ""
    if sign_url and sign_url != url:  # shown without a GET's long query of Twilio's fields
        signed_note = f", signed for {sign_url}"
    query_note = ", fields in the query" if args.method == "GET" else ""
    signer = SHARED_KEY_NAME if shared_key else f"auth token from {source}"
    print(f"{args.method} {url} ({args.kind} webhook{query_note}, signed with {signer}"
          f"{signed_note})")
    try:
        reply = send(webhook, timeout=args.timeout)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        print(f"error: cannot reach {url}: {reason}. Is the app running (scripts/start.sh)? "
              "Started on another port, pass --port N (or --url).", file=sys.stderr)
        return 2
    content_type = reply.headers.get("Content-Type", "")
    print(f"HTTP {reply.status} {reply.reason}" + (f" ({content_type})" if content_type else ""))
    if reply.body:
        print(reply.body.decode("utf-8", "replace"))
    elif reason := reply.headers.get("X-Devhost-Reason"):
        # The local host refused the request itself (the function never saw it): it says why.
        print(f"The local host refused it: {reason}", file=sys.stderr)
    if reply.status == 403:
        # The app answers a refused signature with an empty 403 on purpose (a forger learns
        # nothing); the reason is in the app's own log, one line per refusal.
        print("The app refused the signature: its log says why (the line with outcome=refused "
              "in the scripts/start.sh or func start output).", file=sys.stderr)
    if args.walk is not None and args.kind == "voice" and 200 <= reply.status < 300:
        return _walk(args, webhook, reply, token, shared_key)
    return 0 if 200 <= reply.status < 300 else 1


def _walk(args: argparse.Namespace, first: Webhook, reply: Reply, token: str,
          shared_key: SharedKey | None) -> int:
    """--walk: follow the call flow's TwiML from the voice webhook's answer."""
    from devhost import flowwalk

    target = urlsplit(first.url)
    origin = f"{target.scheme}://{target.netloc}"
    call = {k: v for k, v in first.params.items() if k != "CallToken"}
    call["CallStatus"] = "in-progress"

    def send_one(request: flowwalk.Request) -> tuple[int, str]:
        params = call | request.params
        hook = Webhook(url=request.url, headers={"Content-Type": FORM_CONTENT_TYPE},
                       params=params, body=urlencode(params).encode("ascii"),
                       signed_url=request.sign_url)
        answer = send(_with_twilio_headers(hook, token, shared_key), timeout=args.timeout)
        return answer.status, answer.body.decode("utf-8", "replace")

    choices = [c.strip() for c in args.walk.split(",") if c.strip()]
    try:
        return flowwalk.walk(reply.body.decode("utf-8", "replace"), choices, origin, send_one,
                             print)
    except (urllib.error.URLError, OSError) as error:
        print(f"error: cannot reach {origin}: {getattr(error, 'reason', error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
