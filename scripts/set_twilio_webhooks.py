#!/usr/bin/env python3
"""Point a Twilio phone number's Voice URL, SMS URL and call status callback at this app.

Runs as the azd `postdeploy` hook (see azure.yaml), so that after `azd up` the number answers
through the functions just deployed without a trip to the Twilio console. The same script serves
local development: `--base-url https://<id>.ngrok-free.app` points the number at a tunnel.

It changes only the six webhook fields (voice_url, voice_method, sms_url, sms_method, and the
status_callback and its method: every inbound call's progress is then recorded by call_status),
prints each change as `old -> new`, and with `--dry-run` prints them without changing anything. When
no number is configured it does nothing and exits 0, so `azd up` works before Twilio is set up.

Values come from, in this order: the command line, the process environment (azd exports its
environment's values to hooks), the azd environment file `.azure/<env>/.env`, and
`local.settings.json` (`Values`). An empty value counts as unset. Secrets are never printed.

Run it with the project's venv, `.venv/bin/python scripts/set_twilio_webhooks.py` from the
repository root (scripts/start.sh or scripts/test.sh creates .venv): a bare `python` or
`python3` usually lacks the twilio library. When Twilio's API cannot be reached (DNS, network,
proxy, timeout) it says so in one line and exits 1, as when Twilio refuses.

Dev-only: it lives in scripts/, which .funcignore keeps out of the deployed package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# The spelling that works everywhere: the venv's Python, which has the twilio library.
USAGE_PROG = ".venv/bin/python scripts/set_twilio_webhooks.py"

try:
    from twilio.base.exceptions import TwilioException, TwilioRestException
    from twilio.http import HttpClient
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client
    from twilio.rest.api.v2010.account.incoming_phone_number import IncomingPhoneNumberInstance
except ModuleNotFoundError as missing:  # a bare `python3` outside the venv: say how to run it
    sys.exit(
        f"set_twilio_webhooks: {missing.name} is not installed for {sys.executable}; "
        f"run `{USAGE_PROG}` from the repository root (scripts/start.sh creates .venv)"
    )

REPO_ROOT = Path(__file__).resolve().parents[1]
E164 = re.compile(r"\+[1-9][0-9]{1,14}")  # ASCII digits only, as E.164 has
PHONE_NUMBER_SID = re.compile(r"PN[0-9a-fA-F]{32}")
# Where Twilio should send each kind of event: the function folders' routes (function.json).
VOICE_ROUTE = "voice_url"
SMS_ROUTE = "sms_url"
STATUS_ROUTE = "call_status"
# The console softphone's TwiML App (docs/browser-calls.md): its voice URL is client_voice.
TWIML_APP_ROUTE = "client_voice"
TWIML_APP_SID = re.compile(r"AP[0-9a-fA-F]{32}")
TWIML_APP_FIELDS = ("voice_url", "voice_method", "status_callback", "status_callback_method")
WEBHOOK_METHOD = "POST"
# azd outputs (infra/main.bicep) that name the deployed app's base URL, most specific first;
# PUBLIC_BASE_URL covers a local.settings.json that already names a tunnel.
BASE_URL_KEYS = ("FUNCTION_APP_BASE_URL", "SERVICE_API_URI", "PUBLIC_BASE_URL")
DEFAULT_HTTP_TIMEOUT = 10.0
MAX_HTTP_TIMEOUT = 10.0  # the app's bound on the same setting (shared/outbound/settings.py)
# An azd environment's name, as azd takes one (a folder of .azure/).
AZD_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

EXIT_OK = 0
EXIT_TWILIO_ERROR = 1
EXIT_CONFIG_ERROR = 2
# How much of a transport error's reason to print: enough to tell DNS from a refused proxy.
MAX_REASON_CHARS = 200
URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it, never a secret's value."""


class TwilioUnreachable(Exception):
    """Twilio's API gave no answer (DNS, network, proxy, timeout); the message says which."""


def root_cause(exc: BaseException) -> BaseException:
    """The innermost error under requests' and urllib3's wrappers (MaxRetryError.reason, ...),
    which is the part that tells a DNS failure from a refused connection or a timeout."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException) and exc.args:
            inner = exc.args[0]
        if not isinstance(inner, BaseException):
            inner = exc.__cause__
        if inner is None:
            break
        exc = inner
    return exc


def short_reason(exc: BaseException) -> str:
    """`ErrorType (reason)` in a few words: the wrappers' messages repeat the URL and run on
    for hundreds of characters; a proxy URL's user:password is masked."""
    cause = root_cause(exc)
    reason = " ".join(str(getattr(cause, "strerror", None) or cause).split())
    if not reason:
        return type(exc).__name__
    return f"{type(exc).__name__} ({URL_CREDENTIALS.sub('***@', reason)[:MAX_REASON_CHARS]})"


@contextmanager
def reaching_twilio(action: str) -> Iterator[None]:
    """Turn a transport failure during `action` into a TwilioUnreachable, for one line on
    stderr instead of a 60-line traceback. requests' RequestException (ConnectionError,
    ProxyError, Timeout...) is an OSError, as are socket.gaierror and TimeoutError."""
    try:
        yield
    except OSError as exc:
        raise TwilioUnreachable(
            f"could not reach Twilio's API while {action}: {short_reason(exc)}; "
            "check the network, DNS or proxy (HTTPS_PROXY)"
        ) from exc


FIELDS = ("voice_url", "voice_method", "sms_url", "sms_method", "status_callback",
          "status_callback_method")


@dataclass(frozen=True)
class Webhooks:
    """The webhook fields of an IncomingPhoneNumber this script manages."""

    voice_url: str | None
    voice_method: str | None
    sms_url: str | None
    sms_method: str | None
    status_callback: str | None
    status_callback_method: str | None

    def changes_to(self, desired: Webhooks) -> dict[str, tuple[str | None, str]]:
        """Fields whose value differs from `desired`, as {field: (old, new)}."""
        changes: dict[str, tuple[str | None, str]] = {}
        for field in FIELDS:
            old, new = getattr(self, field), getattr(desired, field)
            if new is not None and old != new:
                changes[field] = (old, new)
        return changes


class Settings:
    """Looks names up across the configuration sources, first non-empty value wins."""

    def __init__(self, sources: Sequence[tuple[str, Mapping[str, str]]]) -> None:
        self._sources = sources

    def get(self, name: str) -> str | None:
        for _label, values in self._sources:
            value = values.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return None


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse an azd environment file (KEY="value" lines, as `azd env set` writes them)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path} ({type(error).__name__})") from None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        values[key.strip()] = value
    return values


def azd_env_values(repo_root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Values of the current azd environment, read from disk so azd itself need not be here."""
    azure_dir = repo_root / ".azure"
    name = environ.get("AZURE_ENV_NAME", "").strip()
    if not name:
        try:
            config = json.loads((azure_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        name = str(config.get("defaultEnvironment") or "") if isinstance(config, dict) else ""
    if not name:
        return {}
    if not AZD_ENV_NAME.fullmatch(name):  # never a path: "..", "a/b", 5,000 characters
        raise ConfigError("the azd environment's name (AZURE_ENV_NAME, or .azure/config.json's "
                          "defaultEnvironment) is not one: letters, digits, '.', '_' or '-', "
                          "at most 64")
    return read_dotenv(azure_dir / name / ".env")


def local_settings_values(repo_root: Path) -> dict[str, str]:
    """`Values` of local.settings.json, where local development keeps its credentials."""
    path = repo_root / "local.settings.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    values = data.get("Values") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        return {}
    return {str(k): v for k, v in values.items() if isinstance(v, str)}


def route_prefix(repo_root: Path) -> str:
    """host.json's HTTP route prefix ("api" unless configured), so URLs match the host."""
    try:
        host = json.loads((repo_root / "host.json").read_text(encoding="utf-8"))
        prefix = host["extensions"]["http"]["routePrefix"]
    except (OSError, ValueError, KeyError, TypeError):
        return "api"
    return str(prefix).strip("/")


def normalise_base_url(url: str) -> str:
    """Validate a base URL: https (Twilio signs the exact URL it calls), no query or fragment."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        raise ConfigError(f"base URL is not a URL, got {url[:200]!r}") from None
    if parts.scheme != "https" or not parts.netloc:
        raise ConfigError(f"base URL must be an https:// URL, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"base URL must not have a query or fragment, got {url!r}")
    return f"https://{parts.netloc}{parts.path.rstrip('/')}"


def desired_webhooks(base_url: str, prefix: str) -> Webhooks:
    """Voice and SMS webhook URLs and the call status callback under `base_url`, all POST
    (what the functions expect)."""
    root = f"{base_url}/{prefix}" if prefix else base_url
    return Webhooks(
        voice_url=f"{root}/{VOICE_ROUTE}",
        voice_method=WEBHOOK_METHOD,
        sms_url=f"{root}/{SMS_ROUTE}",
        sms_method=WEBHOOK_METHOD,
        status_callback=f"{root}/{STATUS_ROUTE}",
        status_callback_method=WEBHOOK_METHOD,
    )


def build_client(settings: Settings, http_client: HttpClient | None) -> Client:
    """A Twilio REST client: API key + secret when both are set, else SID + auth token."""
    account_sid = settings.get("TWILIO_ACCOUNT_SID")
    if not account_sid:
        raise ConfigError("TWILIO_ACCOUNT_SID is not set")
    api_key, api_secret = settings.get("TWILIO_API_KEY"), settings.get("TWILIO_API_SECRET")
    if api_key and api_secret:
        credentials = {"TWILIO_API_KEY": api_key, "TWILIO_API_SECRET": api_secret}
    else:
        token = settings.get("TWILIO_AUTH_TOKEN")
        if not token:
            raise ConfigError(
                "TWILIO_AUTH_TOKEN is not set (nor TWILIO_API_KEY with TWILIO_API_SECRET)"
            )
        credentials = {"TWILIO_ACCOUNT_SID": account_sid, "TWILIO_AUTH_TOKEN": token}
    for name, value in credentials.items():
        # Never quoted: a secret's characters are not for the terminal (the HTTP client's own
        # error printed one, and where it was).
        if not (value.isascii() and value.isprintable()):
            raise ConfigError(f"{name} has characters no Twilio credential has (it is not "
                              "printable ASCII)")
    username, password = credentials.values()
    if http_client is None:
        http_client = TwilioHttpClient(timeout=http_timeout(settings))
    return Client(username, password, account_sid=account_sid, http_client=http_client)


def http_timeout(settings: Settings) -> float:
    """TWILIO_HTTP_TIMEOUT in seconds, the same setting the app uses."""
    raw = settings.get("TWILIO_HTTP_TIMEOUT")
    if raw is None:
        return DEFAULT_HTTP_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError("TWILIO_HTTP_TIMEOUT is not a number") from None
    if not 0 < value <= MAX_HTTP_TIMEOUT:  # also nan and inf, which the socket refuses
        raise ConfigError(f"TWILIO_HTTP_TIMEOUT must be above 0 and at most "
                          f"{MAX_HTTP_TIMEOUT:g} seconds")
    return value


def find_number(
    client: Client, number: str | None, number_sid: str | None
) -> IncomingPhoneNumberInstance:
    """The IncomingPhoneNumber to update, by its SID or else by its E.164 number."""
    if number_sid:
        return client.incoming_phone_numbers(number_sid).fetch()
    assert number is not None
    matches = [
        n
        for n in client.incoming_phone_numbers.list(phone_number=number, limit=20)
        if n.phone_number == number
    ]
    if not matches:
        raise ConfigError(f"{number} is not a phone number of this Twilio account")
    if len(matches) > 1:
        raise ConfigError(f"{number} matches several numbers; set TWILIO_PHONE_NUMBER_SID")
    return matches[0]


def describe(value: str | None) -> str:
    """How a current value is shown: Twilio returns null for a webhook never set."""
    return value if value else "(unset)"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; each overrides the same value from the configuration."""
    parser = argparse.ArgumentParser(
        prog=USAGE_PROG,
        description="Point a Twilio number's Voice and SMS webhooks at this Function App.",
        epilog="Exit codes: 0 done or nothing to do, 1 Twilio refused or could not be reached, "
        "2 a setting is missing or malformed.",
    )
    parser.add_argument(
        "--base-url",
        help="https base URL of the app, e.g. an ngrok URL for local development "
        f"(default: {' / '.join(BASE_URL_KEYS)} from the configuration)",
    )
    parser.add_argument(
        "--number", help="the Twilio number in E.164 (default: TWILIO_PHONE_NUMBER)"
    )
    parser.add_argument(
        "--number-sid", help="the number's SID, PN... (default: TWILIO_PHONE_NUMBER_SID)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would change, change nothing"
    )
    return parser.parse_args(argv)


def resolve_target(args: argparse.Namespace, settings: Settings) -> tuple[str | None, str | None]:
    """The number (E.164) and/or its SID, validated; (None, None) when none is configured."""
    number_sid = args.number_sid or settings.get("TWILIO_PHONE_NUMBER_SID")
    number = args.number or settings.get("TWILIO_PHONE_NUMBER")
    if number_sid and not PHONE_NUMBER_SID.fullmatch(number_sid):
        raise ConfigError("TWILIO_PHONE_NUMBER_SID must be PN followed by 32 hex digits")
    if number and not E164.fullmatch(number):
        raise ConfigError("TWILIO_PHONE_NUMBER must be in E.164, like +14155550100")
    return number, number_sid


def resolve_base_url(args: argparse.Namespace, settings: Settings) -> str:
    """--base-url, else the deployed app's URL that azd recorded after provisioning."""
    if args.base_url:
        return normalise_base_url(args.base_url)
    for key in BASE_URL_KEYS:
        value = settings.get(key)
        if value:
            return normalise_base_url(value)
    raise ConfigError(
        "no base URL: pass --base-url, or run after `azd provision` (FUNCTION_APP_BASE_URL)"
    )


def run(
    args: argparse.Namespace,
    settings: Settings,
    repo_root: Path,
    http_client: HttpClient | None,
    out: Callable[[str], None],
) -> int:
    """Compare the number's webhooks with the wanted ones, print the difference, apply it; then
    the same for the softphone's TwiML App."""
    number, number_sid = resolve_target(args, settings)
    if not number and not number_sid:
        out("set_twilio_webhooks: TWILIO_PHONE_NUMBER / TWILIO_PHONE_NUMBER_SID not set; skipped.")
        return EXIT_OK
    base_url = resolve_base_url(args, settings)
    desired = desired_webhooks(base_url, route_prefix(repo_root))
    client = build_client(settings, http_client)
    point_number(args, client, number, number_sid, desired, out)
    point_twiml_app(args, settings, client, base_url, route_prefix(repo_root), out)
    return EXIT_OK


def point_number(
    args: argparse.Namespace,
    client: Client,
    number: str | None,
    number_sid: str | None,
    desired: Webhooks,
    out: Callable[[str], None],
) -> None:
    with reaching_twilio(f"looking up {number_sid or number}"):
        record = find_number(client, number, number_sid)
    current = Webhooks(*(getattr(record, field) for field in FIELDS))
    changes = current.changes_to(desired)
    out(f"Twilio number {record.phone_number} ({record.sid}):")
    if not changes:
        out("  webhooks already point at this app; nothing to change.")
        return
    for field, (old, new) in changes.items():
        out(f"  {field}: {describe(old)} -> {new}")
    if args.dry_run:
        out("  dry run: nothing changed.")
        return
    with reaching_twilio(f"updating {record.sid} (it may or may not have changed)"):
        record.update(**{field: new for field, (_old, new) in changes.items()})
    out("  updated.")


def twiml_app_name(base_url: str) -> str:
    """The friendly name the app's TwiML App is found by (one per deployment): at most 64."""
    return f"Softphone {urlsplit(base_url).netloc}"[:64]


def point_twiml_app(
    args: argparse.Namespace,
    settings: Settings,
    client: Client,
    base_url: str,
    prefix: str,
    out: Callable[[str], None],
) -> None:
    """The TwiML App the console's softphone calls through: TWILIO_TWIML_APP_SID's, else the
    one named for this deployment, else a new one; its voice URL (client_voice) and status
    callback (call_status) pointed at this app. Only with an API key: a Voice access token
    cannot be signed without one, so without it there are no calls from the browser."""
    sid = settings.get("TWILIO_TWIML_APP_SID")
    if not sid and not (settings.get("TWILIO_API_KEY") and settings.get("TWILIO_API_SECRET")):
        out("TwiML App: TWILIO_API_KEY / TWILIO_API_SECRET not set, so no calls from the "
            "browser; skipped.")
        return
    if sid and not TWIML_APP_SID.fullmatch(sid):
        raise ConfigError("TWILIO_TWIML_APP_SID must be AP followed by 32 hex digits")
    root = f"{base_url}/{prefix}" if prefix else base_url
    wanted = {"voice_url": f"{root}/{TWIML_APP_ROUTE}", "voice_method": WEBHOOK_METHOD,
              "status_callback": f"{root}/{STATUS_ROUTE}",
              "status_callback_method": WEBHOOK_METHOD}
    name = twiml_app_name(base_url)
    with reaching_twilio(f"looking up the TwiML App {sid or name}"):
        if sid:
            app = client.applications(sid).fetch()
        else:
            app = next(iter(client.applications.list(friendly_name=name, limit=20)), None)
    if app is None:
        out(f"TwiML App {name!r}: none yet; one is created:")
        for field, value in wanted.items():
            out(f"  {field}: {value}")
        if args.dry_run:
            out("  dry run: nothing created.")
            return
        with reaching_twilio("creating the TwiML App (it may or may not exist now)"):
            app = client.applications.create(friendly_name=name, **wanted)
        out(f"  created {app.sid}.")
    else:
        changes = {f: (getattr(app, f), v) for f, v in wanted.items() if getattr(app, f) != v}
        out(f"TwiML App {app.friendly_name} ({app.sid}):")
        for field, (old, new) in changes.items():
            out(f"  {field}: {describe(old)} -> {new}")
        if not changes:
            out("  already points at this app; nothing to change.")
        elif args.dry_run:
            out("  dry run: nothing changed.")
        else:
            with reaching_twilio(f"updating {app.sid} (it may or may not have changed)"):
                app.update(**{field: new for field, (_old, new) in changes.items()})
            out("  updated.")
    if not sid:
        out(f"  the softphone needs it: azd env set TWILIO_TWIML_APP_SID {app.sid} && azd "
            "provision (locally: TWILIO_TWIML_APP_SID in local.settings.json)")


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    repo_root: Path = REPO_ROOT,
    http_client: HttpClient | None = None,
) -> int:
    """Entry point; the keyword arguments let tests supply configuration and a Twilio double."""
    args = parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        settings = Settings(
            [
                ("environment", env),
                ("azd environment", azd_env_values(repo_root, env)),
                ("local.settings.json", local_settings_values(repo_root)),
            ]
        )
        return run(args, settings, repo_root, http_client, print)
    except ConfigError as exc:
        print(f"set_twilio_webhooks: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except TwilioRestException as exc:
        # The message is Twilio's (status, code, text); it never contains the credentials.
        print(f"set_twilio_webhooks: Twilio refused: HTTP {exc.status} {exc.msg}", file=sys.stderr)
        return EXIT_TWILIO_ERROR
    except TwilioUnreachable as exc:
        print(f"set_twilio_webhooks: {exc}", file=sys.stderr)
        return EXIT_TWILIO_ERROR
    except TwilioException as exc:
        print(f"set_twilio_webhooks: {exc}", file=sys.stderr)
        return EXIT_TWILIO_ERROR


if __name__ == "__main__":
    sys.exit(main())
