"""scripts/set_twilio_webhooks.py against a Twilio double at the HTTP layer.

Everything above the HTTP request is the real twilio library (URL building, form encoding,
auth, paging, error mapping), so these tests see the requests Twilio would receive. Where
../shared is present the requests and the double's answers are also checked against Twilio's
OpenAPI description of the 2010-04-01 API, so the double cannot drift from the real API.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from twilio.http import HttpClient
from twilio.http.response import Response

from devhost.pytest_plugin import require_shared

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TWILIO_SPEC = SHARED / "twilio-oai" / "twilio_api_v2010.json"

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "auth-token-for-webhook-script-tests"
API_KEY = "SK" + "2" * 32
API_SECRET = "api-secret-for-webhook-script-tests"
NUMBER = "+14155550100"
NUMBER_SID = "PN" + "3" * 32
OTHER_NUMBER_SID = "PN" + "4" * 32
APP = "https://func-abc123.azurewebsites.net"
DEMO_VOICE = "https://demo.twilio.com/welcome/voice/"
DEMO_SMS = "https://demo.twilio.com/welcome/sms/reply"
API_BASE = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}"


def load_script() -> ModuleType:
    """Import the script by path: scripts/ is a folder of tools, not a package."""
    path = REPO / "scripts" / "set_twilio_webhooks.py"
    spec = importlib.util.spec_from_file_location("set_twilio_webhooks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


script = load_script()


def number_record(sid: str, phone_number: str, **webhooks: str | None) -> dict[str, Any]:
    """An IncomingPhoneNumber as Twilio's API returns it (snake_case JSON)."""
    record: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "address_requirements": "none",
        "address_sid": None,
        "api_version": "2010-04-01",
        "beta": False,
        "bundle_sid": None,
        "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
        "date_created": "Thu, 30 Jul 2015 23:19:04 +0000",
        "date_updated": "Thu, 30 Jul 2015 23:19:04 +0000",
        "emergency_address_sid": None,
        "emergency_address_status": "unregistered",
        "emergency_status": "Active",
        "friendly_name": "(415) 555-0100",
        "identity_sid": None,
        "origin": "twilio",
        "phone_number": phone_number,
        "sid": sid,
        "sms_application_sid": None,
        "sms_fallback_method": "POST",
        "sms_fallback_url": None,
        "sms_method": "POST",
        "sms_url": DEMO_SMS,
        "status": "in-use",
        "status_callback": None,
        "status_callback_method": "POST",
        "subresource_uris": {
            "assigned_add_ons": f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/"
            f"{sid}/AssignedAddOns.json"
        },
        "trunk_sid": None,
        "type": "local",
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/{sid}.json",
        "voice_application_sid": None,
        "voice_caller_id_lookup": False,
        "voice_fallback_method": "POST",
        "voice_fallback_url": None,
        "voice_method": "POST",
        "voice_receive_mode": "voice",
        "voice_url": DEMO_VOICE,
    }
    record.update(webhooks)
    return record


# Form fields of an update and the JSON fields they set.
UPDATE_FIELDS = {
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
}


APP_SID = "AP" + "5" * 32
APP_FORM_FIELDS = {"FriendlyName": "friendly_name", "VoiceUrl": "voice_url",
                   "VoiceMethod": "voice_method", "StatusCallback": "status_callback",
                   "StatusCallbackMethod": "status_callback_method"}


def application_record(sid: str, friendly_name: str, **fields: str | None) -> dict[str, Any]:
    """A TwiML App (Application) as Twilio's API returns it."""
    record: dict[str, Any] = {
        "account_sid": ACCOUNT_SID, "api_version": "2010-04-01",
        "date_created": "Mon, 30 Nov 2026 10:00:00 +0000",
        "date_updated": "Mon, 30 Nov 2026 10:00:00 +0000",
        "friendly_name": friendly_name, "message_status_callback": None, "sid": sid,
        "sms_fallback_method": "POST", "sms_fallback_url": None, "sms_method": "POST",
        "sms_status_callback": None, "sms_url": None, "status_callback": None,
        "status_callback_method": "POST",
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Applications/{sid}.json",
        "voice_caller_id_lookup": False, "voice_fallback_method": "POST",
        "voice_fallback_url": None, "voice_method": "POST", "voice_url": None,
        "public_application_connect_enabled": True,
    }
    record.update(fields)
    return record


@dataclass
class Recorded:
    """One request as it left the twilio library, and the answer the double gave."""

    method: str
    url: str
    params: dict[str, Any]
    data: dict[str, Any]
    headers: dict[str, str]
    auth: tuple[str, str] | None
    status: int = 0
    body: str = ""

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


@dataclass
class PhoneNumbersDouble(HttpClient):
    """Twilio's IncomingPhoneNumbers endpoints over an in-memory account."""

    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    error: tuple[int, int, str] | None = None
    # Raised instead of answering (for requests with method `unreachable_on`, or all): Twilio
    # not reached at all, as the requests-based client fails on DNS, network or proxy trouble.
    unreachable: OSError | None = None
    unreachable_on: str | None = None

    def __post_init__(self) -> None:
        super().__init__(logger=logging.getLogger("tests.phone_numbers_double"), is_async=False)

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Record the request, then answer it like Twilio would."""
        rec = Recorded(method, url, dict(params or {}), dict(data or {}), dict(headers or {}), auth)
        if self.unreachable is not None and self.unreachable_on in (None, method):
            raise self.unreachable
        rec.status, payload = self._answer(rec)
        rec.body = json.dumps(payload)
        self.requests.append(rec)
        return Response(rec.status, rec.body, {"Content-Type": "application/json"})

    def _answer(self, rec: Recorded) -> tuple[int, dict[str, Any]]:
        if self.error is not None:
            status, code, message = self.error
            return status, twilio_error(status, code, message)
        collection = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
        one = re.fullmatch(
            rf"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/(PN\w+)\.json", rec.path
        )
        if rec.method == "GET" and rec.path == collection:
            return 200, self._page(rec)
        if "/Applications" in rec.path:
            return self._application(rec)
        if one and one.group(1) in self.numbers:
            record = self.numbers[one.group(1)]
            if rec.method == "POST":
                for form_field, json_field in UPDATE_FIELDS.items():
                    if form_field in rec.data:
                        record[json_field] = rec.data[form_field]
            return 200, record
        return 404, twilio_error(404, 20404, f"The requested resource {rec.path} was not found")

    def _application(self, rec: Recorded) -> tuple[int, dict[str, Any]]:
        """The Applications endpoints: list by FriendlyName, create, fetch and update."""
        collection = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Applications.json"
        one = re.fullmatch(
            rf"/2010-04-01/Accounts/{ACCOUNT_SID}/Applications/(AP\w+)\.json", rec.path)
        if rec.path == collection and rec.method == "GET":
            wanted = rec.params.get("FriendlyName")
            found = [a for a in self.applications.values()
                     if wanted in (None, a["friendly_name"])]
            uri = f"{collection}?PageSize=20&Page=0"
            return 200, {"applications": found, "end": max(len(found) - 1, 0),
                         "first_page_uri": uri, "next_page_uri": None, "page": 0,
                         "page_size": 20, "previous_page_uri": None, "start": 0, "uri": uri}
        if rec.path == collection and rec.method == "POST":
            sid = "AP" + f"{len(self.applications) + 6:x}" * 32
            record = application_record(sid, "")
            self.applications[sid] = record
        elif one and one.group(1) in self.applications:
            record = self.applications[one.group(1)]
            if rec.method == "GET":
                return 200, record
        else:
            return 404, twilio_error(404, 20404, f"The requested resource {rec.path} was not found")
        for form_field, json_field in APP_FORM_FIELDS.items():
            if form_field in rec.data:
                record[json_field] = rec.data[form_field]
        return (201 if rec.path == collection else 200), record

    def _page(self, rec: Recorded) -> dict[str, Any]:
        wanted = rec.params.get("PhoneNumber")
        found = [n for n in self.numbers.values() if wanted in (None, n["phone_number"])]
        uri = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json?PageSize=20&Page=0"
        return {
            "incoming_phone_numbers": found,
            "end": max(len(found) - 1, 0),
            "first_page_uri": uri,
            "next_page_uri": None,
            "page": 0,
            "page_size": 20,
            "previous_page_uri": None,
            "start": 0,
            "uri": uri,
        }

    def updates(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's error body."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@pytest.fixture
def twilio() -> PhoneNumbersDouble:
    double = PhoneNumbersDouble()
    double.numbers[NUMBER_SID] = number_record(NUMBER_SID, NUMBER)
    double.numbers[OTHER_NUMBER_SID] = number_record(OTHER_NUMBER_SID, "+14155550199")
    return double


@pytest.fixture
def env() -> dict[str, str]:
    """What the azd postdeploy hook sees: azd's environment values, exported."""
    return {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": NUMBER,
        "FUNCTION_APP_BASE_URL": APP,
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository root of the script's own: no real .azure/ or local.settings.json leaks in."""
    (tmp_path / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": "api"}}})
    )
    return tmp_path


def run(argv: list[str], env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble) -> int:
    return script.main(argv, environ=env, repo_root=repo, http_client=twilio)


def test_points_the_number_at_the_deployed_functions(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([], env, repo, twilio) == 0

    [update] = twilio.updates()
    assert update.path.endswith(f"/IncomingPhoneNumbers/{NUMBER_SID}.json")
    assert update.data == {"VoiceUrl": f"{APP}/api/voice_url", "SmsUrl": f"{APP}/api/sms_url",
                           "StatusCallback": f"{APP}/api/call_status"}
    assert update.auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert twilio.numbers[NUMBER_SID]["voice_url"] == f"{APP}/api/voice_url"
    assert twilio.numbers[OTHER_NUMBER_SID]["voice_url"] == DEMO_VOICE
    out = capsys.readouterr().out
    assert f"voice_url: {DEMO_VOICE} -> {APP}/api/voice_url" in out
    assert f"sms_url: {DEMO_SMS} -> {APP}/api/sms_url" in out
    assert "updated" in out


def test_finds_the_number_by_its_e164_filter(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    run(["--dry-run"], env, repo, twilio)
    [lookup] = twilio.requests
    assert lookup.method == "GET"
    assert lookup.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
    assert lookup.params["PhoneNumber"] == NUMBER


def test_dry_run_prints_the_changes_and_changes_nothing(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--dry-run"], env, repo, twilio) == 0
    assert twilio.updates() == []
    assert twilio.numbers[NUMBER_SID]["voice_url"] == DEMO_VOICE
    out = capsys.readouterr().out
    assert f"-> {APP}/api/voice_url" in out
    assert "dry run: nothing changed" in out


def test_sends_only_the_fields_that_differ(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    twilio.numbers[NUMBER_SID].update(voice_url=f"{APP}/api/voice_url", sms_method="GET",
                                      status_callback=f"{APP}/api/call_status")
    run([], env, repo, twilio)
    [update] = twilio.updates()
    assert update.data == {"SmsUrl": f"{APP}/api/sms_url", "SmsMethod": "POST"}
    assert "sms_method: GET -> POST" in capsys.readouterr().out


def test_a_number_already_pointing_here_is_left_alone(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    twilio.numbers[NUMBER_SID].update(
        voice_url=f"{APP}/api/voice_url", sms_url=f"{APP}/api/sms_url",
        status_callback=f"{APP}/api/call_status",
    )
    assert run([], env, repo, twilio) == 0
    assert twilio.updates() == []
    assert "nothing to change" in capsys.readouterr().out


def test_unset_webhooks_are_shown_as_unset(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    twilio.numbers[NUMBER_SID].update(voice_url=None, sms_url="")
    run(["--dry-run"], env, repo, twilio)
    assert f"voice_url: (unset) -> {APP}/api/voice_url" in capsys.readouterr().out


def test_number_sid_is_fetched_directly(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    del env["TWILIO_PHONE_NUMBER"]
    env["TWILIO_PHONE_NUMBER_SID"] = NUMBER_SID
    assert run([], env, repo, twilio) == 0
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in twilio.requests] == [
        ("GET", f"{NUMBER_SID}.json"),
        ("POST", f"{NUMBER_SID}.json"),
    ]


def test_api_key_is_preferred_over_the_auth_token(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    env.update(TWILIO_API_KEY=API_KEY, TWILIO_API_SECRET=API_SECRET)
    run(["--dry-run"], env, repo, twilio)
    assert {r.auth for r in twilio.requests} == {(API_KEY, API_SECRET)}
    # The account in the URL is still the account's, not the key's.
    assert all(f"/Accounts/{ACCOUNT_SID}/" in r.url for r in twilio.requests)


def test_base_url_option_points_the_number_at_a_tunnel(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    run(["--base-url", "https://ab12-cd34.ngrok-free.app/"], env, repo, twilio)
    [update] = twilio.updates()
    assert update.data["VoiceUrl"] == "https://ab12-cd34.ngrok-free.app/api/voice_url"


def test_route_prefix_follows_host_json(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    (repo / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": ""}}})
    )
    run([], env, repo, twilio)
    [update] = twilio.updates()
    assert update.data["SmsUrl"] == f"{APP}/sms_url"


def test_values_come_from_azd_environment_and_local_settings(
    repo: Path, twilio: PhoneNumbersDouble
) -> None:
    """Local use without exported variables: azd's env file, then local.settings.json."""
    (repo / ".azure" / "dev").mkdir(parents=True)
    (repo / ".azure" / "config.json").write_text('{"version": 1, "defaultEnvironment": "dev"}')
    (repo / ".azure" / "dev" / ".env").write_text(
        f'AZURE_ENV_NAME="dev"\nFUNCTION_APP_BASE_URL="{APP}"\nTWILIO_PHONE_NUMBER="{NUMBER}"\n'
    )
    (repo / "local.settings.json").write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                    "TWILIO_PHONE_NUMBER": "+14155550199",
                    "PUBLIC_BASE_URL": "",
                },
            }
        )
    )
    assert run([], {}, repo, twilio) == 0
    [update] = twilio.updates()
    assert update.path.endswith(f"{NUMBER_SID}.json")  # azd's number wins over local settings
    assert update.data["VoiceUrl"] == f"{APP}/api/voice_url"
    assert update.auth == (ACCOUNT_SID, AUTH_TOKEN)


def test_process_environment_wins_over_files(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    (repo / "local.settings.json").write_text(
        json.dumps({"Values": {"TWILIO_AUTH_TOKEN": "a-different-token-from-local-file"}})
    )
    run(["--dry-run"], env, repo, twilio)
    assert {r.auth for r in twilio.requests} == {(ACCOUNT_SID, AUTH_TOKEN)}


def test_nothing_to_do_without_a_number(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    """`azd up` must succeed before the user has configured Twilio at all."""
    del env["TWILIO_PHONE_NUMBER"]
    assert run([], env, repo, twilio) == 0
    assert twilio.requests == []
    assert "skipped" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "argv", "named"),
    [
        ({"TWILIO_AUTH_TOKEN": ""}, [], "TWILIO_AUTH_TOKEN"),
        ({"TWILIO_ACCOUNT_SID": ""}, [], "TWILIO_ACCOUNT_SID"),
        ({"TWILIO_PHONE_NUMBER": "4155550100"}, [], "E.164"),
        ({"TWILIO_PHONE_NUMBER_SID": "PN123"}, [], "TWILIO_PHONE_NUMBER_SID"),
        ({"FUNCTION_APP_BASE_URL": ""}, [], "base URL"),
        ({}, ["--base-url", "http://localhost:7071"], "https://"),
        ({}, ["--base-url", "https://x.ngrok-free.app/?a=b"], "query"),
        ({"TWILIO_PHONE_NUMBER": "+14155550142"}, [], "not a phone number of this"),
        # Each of these ended in a traceback (an attack run's); the token's one printed a
        # character of the secret and its place.
        ({}, ["--base-url", "https://[::1"], "base URL is not a URL"),
        ({}, ["--base-url", "https://x.example:99999"], "base URL is not a URL"),
        ({"TWILIO_AUTH_TOKEN": "sekrit\u20actoken"}, [], "TWILIO_AUTH_TOKEN has characters"),
        ({"AZURE_ENV_NAME": "x" * 5000}, [], "the azd environment's name"),
        ({"AZURE_ENV_NAME": ".."}, [], "the azd environment's name"),
    ],
)
def test_configuration_errors_exit_2_and_name_the_problem(
    change: dict[str, str],
    argv: list[str],
    named: str,
    env: dict[str, str],
    repo: Path,
    twilio: PhoneNumbersDouble,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env.update(change)
    assert run(argv, env, repo, twilio) == 2
    assert twilio.updates() == []
    err = capsys.readouterr().err
    assert named in err
    assert AUTH_TOKEN not in err and "sekrit" not in err and "\u20ac" not in err


def test_twilio_errors_exit_1_without_leaking_credentials(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    twilio.error = (401, 20003, "Authenticate")
    assert run([], env, repo, twilio) == 1
    captured = capsys.readouterr()
    assert "HTTP 401" in captured.err
    assert "Authenticate" in captured.err
    assert AUTH_TOKEN not in captured.err + captured.out


UNREACHABLE_ERRORS = [
    requests.ConnectionError(
        "HTTPSConnectionPool(host='api.twilio.com', port=443): Max retries exceeded with url: "
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
    ),
    requests.exceptions.ProxyError("Unable to connect to proxy"),
    requests.ConnectTimeout("connect timed out"),
    requests.ReadTimeout("Read timed out. (read timeout=10)"),
    socket.gaierror(-3, "Temporary failure in name resolution"),
    OSError(101, "Network is unreachable"),
    TimeoutError("timed out"),
]


def assert_one_line_unreachable(err: str, action: str, error: BaseException) -> None:
    """What the user sees: one line naming the step, Twilio's API and the error, no traceback."""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"set_twilio_webhooks: could not reach Twilio's API while {action}")
    assert type(error).__name__ in err
    assert "Traceback" not in err
    assert AUTH_TOKEN not in err


@pytest.mark.parametrize("error", UNREACHABLE_ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("argv", [[], ["--dry-run"]], ids=["apply", "dry-run"])
def test_unreachable_twilio_exits_1_in_one_line(
    error: OSError,
    argv: list[str],
    env: dict[str, str],
    repo: Path,
    twilio: PhoneNumbersDouble,
    capsys: pytest.CaptureFixture[str],
) -> None:
    twilio.unreachable = error
    assert run(argv, env, repo, twilio) == 1
    captured = capsys.readouterr()
    assert_one_line_unreachable(captured.err, f"looking up {NUMBER}", error)
    assert AUTH_TOKEN not in captured.out


def test_twilio_lost_during_the_update_says_so(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    """A timeout on the update leaves its outcome unknown: the line says which step failed."""
    twilio.unreachable, twilio.unreachable_on = requests.ReadTimeout("read timed out"), "POST"
    assert run([], env, repo, twilio) == 1
    err = capsys.readouterr().err
    assert_one_line_unreachable(err, f"updating {NUMBER_SID}", twilio.unreachable)
    assert "may or may not have changed" in err


def test_unreachable_through_the_real_http_client_names_the_cause_not_the_proxy_password(
    env: dict[str, str], repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The script's own requests-based client, sent through a proxy on a closed local port:
    requests' real exception chain, and nothing leaves the machine."""
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://proxyuser:proxy-password-9@127.0.0.1:{closed.getsockname()[1]}"
        for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        env["TWILIO_HTTP_TIMEOUT"] = "5"
        assert script.main(["--dry-run"], environ=env, repo_root=repo) == 1
    err = capsys.readouterr().err
    assert_one_line_unreachable(err, f"looking up {NUMBER}", requests.exceptions.ProxyError())
    assert "Connection refused" in err
    assert "proxy-password-9" not in err


def test_without_the_twilio_library_it_names_the_venv_spelling() -> None:
    """`python3 scripts/set_twilio_webhooks.py` outside the venv: one line saying how to run
    it, not ModuleNotFoundError's traceback (-S hides site-packages, hence twilio)."""
    result = subprocess.run(
        [sys.executable, "-S", str(REPO / "scripts" / "set_twilio_webhooks.py"), "--dry-run"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "twilio is not installed" in result.stderr
    assert "`.venv/bin/python scripts/set_twilio_webhooks.py`" in result.stderr


def test_usage_names_the_venv_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    assert capsys.readouterr().out.startswith(
        "usage: .venv/bin/python scripts/set_twilio_webhooks.py"
    )


@pytest.mark.parametrize("timeout", ["nan", "inf", "1e400", "0", "11"])
def test_a_timeout_the_socket_or_the_app_would_refuse_exits_2_before_reaching_twilio(
    timeout: str, env: dict[str, str], repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """nan and inf ended in a traceback from the socket (an attack run's); the app itself takes
    at most 10 s."""
    env["TWILIO_HTTP_TIMEOUT"] = timeout

    assert script.main([], environ=env, repo_root=repo, http_client=None) == 2

    assert "TWILIO_HTTP_TIMEOUT must be above 0 and at most 10 seconds" in capsys.readouterr().err


def test_the_bound_on_the_timeout_is_the_apps() -> None:
    from shared.outbound.settings import MAX_HTTP_TIMEOUT

    assert script.MAX_HTTP_TIMEOUT == MAX_HTTP_TIMEOUT


def test_an_azd_environment_file_that_is_not_utf_8_is_named(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / ".azure" / "dev").mkdir(parents=True)
    (repo / ".azure" / "dev" / ".env").write_bytes(b"TWILIO_PHONE_NUMBER=\xff\n")
    env["AZURE_ENV_NAME"] = "dev"

    assert run([], env, repo, twilio) == 2

    assert "cannot read" in capsys.readouterr().err


def test_dotenv_parser_reads_what_azd_writes(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text('# comment\nA="x=y"\nB=plain\nC="say \\"hi\\""\n\nD=""\n')
    assert script.read_dotenv(path) == {"A": "x=y", "B": "plain", "C": 'say "hi"', "D": ""}


# ---- Against Twilio's OpenAPI description (../shared) ----------------------------------------


@pytest.fixture(scope="module")
def twilio_openapi() -> Iterator[Any]:
    """The 2010-04-01 spec, loaded once (about 1 s without meta-validation)."""
    from openapi_core import Config, OpenAPI

    path = require_shared(TWILIO_SPEC)
    e164 = re.compile(r"\+[1-9]\d{1,14}")
    config = Config(
        spec_validator_cls=None,
        extra_format_validators={
            "phone-number": lambda value: bool(e164.fullmatch(str(value))),
            "endpoint": lambda value: bool(
                e164.fullmatch(str(value)) or re.match(r"(client|sip):", str(value))
            ),
        },
    )
    # json, not from_file_path: its YAML loader rejects some of this file's JSON escapes.
    yield OpenAPI.from_dict(json.loads(path.read_text(encoding="utf-8")), config=config)


def as_requests_pair(rec: Recorded) -> tuple[requests.PreparedRequest, requests.Response]:
    """The recorded exchange as `requests` objects, which openapi-core knows how to read."""
    prepared = requests.Request(
        rec.method,
        rec.url,
        params=rec.params,
        data=rec.data or None,
        headers=rec.headers,
        auth=rec.auth,  # HTTP basic, as the real client sends it: the spec requires it
    ).prepare()
    response = requests.Response()
    response.status_code = rec.status
    response._content = rec.body.encode()
    response.headers["Content-Type"] = "application/json"
    response.request = prepared
    return prepared, response


def test_requests_and_answers_match_twilio_openapi(
    twilio_openapi: Any, env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    run([], env, repo, twilio)
    env["TWILIO_PHONE_NUMBER_SID"] = NUMBER_SID
    twilio.numbers[NUMBER_SID]["sms_method"] = "GET"
    run([], env, repo, twilio)
    assert {(r.method, r.path.endswith("IncomingPhoneNumbers.json")) for r in twilio.requests} == {
        ("GET", True),
        ("GET", False),
        ("POST", False),
    }
    for rec in twilio.requests:
        prepared, response = as_requests_pair(rec)
        openapi_request = RequestsOpenAPIRequest(prepared)
        twilio_openapi.validate_request(openapi_request)
        twilio_openapi.validate_response(openapi_request, RequestsOpenAPIResponse(response))


def test_the_openapi_check_rejects_a_request_twilio_would_refuse(twilio_openapi: Any) -> None:
    """The check above must be able to fail: an HTTP method Twilio does not accept."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest
    from openapi_core.validation.request.exceptions import InvalidRequestBody

    bad = Recorded(
        "POST",
        f"{API_BASE}/IncomingPhoneNumbers/{NUMBER_SID}.json",
        {},
        {"VoiceUrl": f"{APP}/api/voice_url", "VoiceMethod": "PATCH"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        (ACCOUNT_SID, AUTH_TOKEN),
    )
    prepared, _response = as_requests_pair(bad)
    with pytest.raises(InvalidRequestBody):
        twilio_openapi.validate_request(RequestsOpenAPIRequest(prepared))


def test_the_number_reports_every_inbound_call_to_call_status(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    """An inbound call's lifecycle is recorded by call_status, without a storage write on the
    voice webhook's path: the number's own status callback points there."""
    twilio.numbers[NUMBER_SID].update(status_callback="https://old.example/status",
                                      status_callback_method="GET")

    assert run([], env, repo, twilio) == 0

    assert twilio.numbers[NUMBER_SID]["status_callback"] == f"{APP}/api/call_status"
    assert twilio.numbers[NUMBER_SID]["status_callback_method"] == "POST"


# --- the softphone's TwiML App -------------------------------------------------------------------

def test_with_an_api_key_a_twiml_app_is_created_once_and_its_sid_printed(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    env.update(TWILIO_API_KEY=API_KEY, TWILIO_API_SECRET=API_SECRET)

    assert run([], env, repo, twilio) == 0
    assert run([], env, repo, twilio) == 0  # the second deploy finds it by name

    [app] = twilio.applications.values()
    assert app["friendly_name"] == "Softphone func-abc123.azurewebsites.net"
    assert app["voice_url"] == f"{APP}/api/client_voice" and app["voice_method"] == "POST"
    assert app["status_callback"] == f"{APP}/api/call_status"
    printed = capsys.readouterr().out
    assert f"azd env set TWILIO_TWIML_APP_SID {app['sid']}" in printed
    assert API_SECRET not in printed


def test_the_configured_twiml_app_is_pointed_here_and_only_what_differs_is_sent(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    twilio.applications[APP_SID] = application_record(
        APP_SID, "mine", voice_url="https://old.example/voice", status_callback=f"{APP}/api/call_status")
    env["TWILIO_TWIML_APP_SID"] = APP_SID

    assert run([], env, repo, twilio) == 0

    [update] = [r for r in twilio.updates() if "/Applications/" in r.path]
    assert update.data == {"VoiceUrl": f"{APP}/api/client_voice"}
    assert twilio.applications[APP_SID]["friendly_name"] == "mine"


def test_without_an_api_key_no_twiml_app_is_made(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([], env, repo, twilio) == 0

    assert twilio.applications == {}
    assert not [r for r in twilio.requests if "/Applications" in r.path]
    assert "no calls from the browser; skipped" in capsys.readouterr().out


def test_dry_run_creates_no_twiml_app(
    env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    env.update(TWILIO_API_KEY=API_KEY, TWILIO_API_SECRET=API_SECRET)

    assert run(["--dry-run"], env, repo, twilio) == 0

    assert twilio.applications == {} and twilio.updates() == []


def test_the_twiml_app_requests_match_twilio_openapi(
    twilio_openapi: Any, env: dict[str, str], repo: Path, twilio: PhoneNumbersDouble
) -> None:
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    env.update(TWILIO_API_KEY=API_KEY, TWILIO_API_SECRET=API_SECRET)
    run([], env, repo, twilio)  # list, create
    env["TWILIO_TWIML_APP_SID"] = next(iter(twilio.applications))
    twilio.applications[env["TWILIO_TWIML_APP_SID"]]["voice_method"] = "GET"
    run([], env, repo, twilio)  # fetch, update
    apps = [r for r in twilio.requests if "/Applications" in r.path]
    assert {(r.method, r.path.endswith("Applications.json")) for r in apps} == {
        ("GET", True), ("POST", True), ("GET", False), ("POST", False)}
    for rec in apps:
        prepared, response = as_requests_pair(rec)
        openapi_request = RequestsOpenAPIRequest(prepared)
        twilio_openapi.validate_request(openapi_request)
        twilio_openapi.validate_response(openapi_request, RequestsOpenAPIResponse(response))
