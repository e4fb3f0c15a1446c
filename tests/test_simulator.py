"""The signed-webhook simulator: Twilio's form fields and headers, a signature Twilio's own
validator accepts, where the token comes from, what it prints and how it exits."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from twilio.request_validator import RequestValidator

from devhost import settings as local_settings
from devhost import simulate

FIXTURE_APP = Path(__file__).parent / "fixtures" / "devhost_app"
TOKEN = "simulator-test-auth-token-000001"
URL = "http://127.0.0.1:7071/api/voice_url"
LOCATION = ("City", "State", "Zip", "Country")
VOICE_FIELDS = {
    "CallSid", "AccountSid", "From", "To", "CallStatus", "ApiVersion", "Direction", "Caller",
    "Called", "CallToken",
    *(f"{who}{what}" for who in ("From", "To", "Caller", "Called") for what in LOCATION),
}
SMS_FIELDS = {
    # No MessagingServiceSid: Twilio sends one only for a number in a Messaging Service (and the
    # same one every time), and the app keeps opt-outs under it.
    "MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "From", "To",
    "Body", "NumMedia", "NumSegments", "SmsStatus", "ApiVersion",
    *(f"{who}{what}" for who in ("From", "To") for what in LOCATION),
}


def valid(hook: simulate.Webhook, url: str, token: str = TOKEN) -> bool:
    return RequestValidator(token).validate(url, hook.params, hook.headers["X-Twilio-Signature"])


def valid_get(url: str, signature: str, token: str = TOKEN) -> bool:
    """Twilio signs a GET webhook over its full URL, query included, and no body parameters."""
    return RequestValidator(token).validate(url, {}, signature)


def write_local_settings(root: Path, port: int | None = None, **values: str) -> None:
    data: dict = {"IsEncrypted": False, "Values": values}
    if port is not None:
        data["Host"] = {"LocalHttpPort": port}
    (root / "local.settings.json").write_text(json.dumps(data))


@pytest.fixture
def served_fixture_app(start_served_host):
    return start_served_host(FIXTURE_APP)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    # The simulator reads local.settings.json from its --app-root, the current folder by
    # default: a developer's own file (their PUBLIC_BASE_URL) must not sign these requests.
    monkeypatch.chdir(tmp_path)
    for name in ("TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL", "TWILIO_PHONE_NUMBER",
                 "TWILIO_ACCOUNT_SID", "TWILIO_SHARED_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    # A local run: the loopback WEBSITE_HOSTNAME that func start and the local host set (an
    # Azure one would make the app trust only that origin).
    monkeypatch.setenv("WEBSITE_HOSTNAME", "localhost:7071")
    return monkeypatch


# -- the webhook -------------------------------------------------------------------------------


def test_voice_form_has_twilios_fields():
    hook = simulate.build("voice", URL, TOKEN)
    assert set(hook.params) == VOICE_FIELDS
    assert re.fullmatch(r"CA[0-9a-f]{32}", hook.params["CallSid"])
    assert re.fullmatch(r"AC[0-9a-f]{32}", hook.params["AccountSid"])
    assert hook.params["Caller"] == hook.params["From"]
    assert hook.params["Called"] == hook.params["To"]
    assert (hook.params["Direction"], hook.params["CallStatus"]) == ("inbound", "ringing")
    assert hook.params["ApiVersion"] == "2010-04-01"


def test_sms_form_has_twilios_fields():
    hook = simulate.build("sms", URL, TOKEN, body="hello")
    assert set(hook.params) == SMS_FIELDS
    sid = hook.params["MessageSid"]
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert hook.params["SmsSid"] == hook.params["SmsMessageSid"] == sid
    assert (hook.params["Body"], hook.params["NumMedia"], hook.params["SmsStatus"]) == (
        "hello", "0", "received")


def test_headers_are_twilios():
    hook = simulate.build("sms", URL, TOKEN)
    assert hook.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert hook.headers["User-Agent"] == "TwilioProxy/1.1"
    uuid.UUID(hook.headers["I-Twilio-Idempotency-Token"])
    assert hook.body.decode().count("&") == len(hook.params) - 1


def test_the_signature_is_valid_for_twilios_validator_and_only_for_the_url_and_token():
    hook = simulate.build("voice", URL + "?message=hi", TOKEN)
    assert valid(hook, URL + "?message=hi")
    assert not valid(hook, URL)
    assert not valid(hook, URL + "?message=hi", token="another-token")


def test_options_set_body_from_to_and_extra_parameters():
    hook = simulate.build("sms", URL, TOKEN, body="Yo", from_="+14155550111",
                          to="+14155550122", params={"NumMedia": "1", "MediaUrl0": "https://x/y"})
    assert hook.params["Body"] == "Yo"
    assert (hook.params["From"], hook.params["To"]) == ("+14155550111", "+14155550122")
    assert (hook.params["NumMedia"], hook.params["MediaUrl0"]) == ("1", "https://x/y")
    assert valid(hook, URL)


def test_sign_url_signs_for_another_url():
    public = "https://abc.ngrok.app/api/voice_url"
    hook = simulate.build("voice", URL, TOKEN, sign_url=public)
    assert valid(hook, public)
    assert not valid(hook, URL)


def test_the_webhook_repr_shows_no_signature():
    hook = simulate.build("voice", URL, TOKEN)
    assert hook.headers["X-Twilio-Signature"] not in repr(hook)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        simulate.build("fax", URL, TOKEN)


def test_get_puts_the_fields_in_the_query_and_signs_the_full_url():
    hook = simulate.build("sms", URL + "?x=1", TOKEN, body="hi there", method="GET")
    parts = urlsplit(hook.url)
    assert parts.path == "/api/voice_url"
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    assert query == {"x": "1", **hook.params}
    assert query["Body"] == "hi there"
    assert (hook.method, hook.body, hook.signed_params) == ("GET", b"", {})
    assert "Content-Type" not in hook.headers
    signature = hook.headers["X-Twilio-Signature"]
    assert valid_get(hook.url, signature)
    assert not valid_get(URL + "?x=1", signature)  # the query's fields are what is signed
    assert not valid(hook, URL + "?x=1")  # not the POST way (URL + sorted form)


def test_get_signs_the_public_url_with_the_query():
    public = "https://abc.ngrok.app/api/voice_url"
    hook = simulate.build("voice", URL, TOKEN, sign_url=public, method="GET")
    assert hook.signed_url == public + "?" + urlsplit(hook.url).query
    assert valid_get(hook.signed_url, hook.headers["X-Twilio-Signature"])
    assert not valid_get(hook.url, hook.headers["X-Twilio-Signature"])


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method"):
        simulate.build("voice", URL, TOKEN, method="PUT")


# -- where it sends ----------------------------------------------------------------------------


def test_the_default_port_is_the_one_the_local_host_picks(tmp_path):
    """The same function devhost.server's default follows: Host.LocalHttpPort, else 7071."""
    assert local_settings.http_port(None) == local_settings.DEFAULT_PORT == 7071
    assert simulate.target_url("voice", None, None, None) == URL
    write_local_settings(tmp_path, port=7188)
    found = local_settings.read(tmp_path)
    assert local_settings.http_port(found) == 7188
    assert simulate.target_url("sms", None, None, found) == "http://127.0.0.1:7188/api/sms_url"
    assert simulate.target_url("sms", None, 7300, found) == "http://127.0.0.1:7300/api/sms_url"
    write_local_settings(tmp_path)
    assert local_settings.http_port(local_settings.read(tmp_path)) == 7071


def test_reaches_the_host_on_local_settings_port(served_host, clean_env, tmp_path, capsys):
    """No --url, no --port: Host.LocalHttpPort names where the served app listens."""
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    write_local_settings(tmp_path, port=served_host.port)
    assert simulate.main(["voice", "--app-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"POST http://127.0.0.1:{served_host.port}/api/voice_url ")
    assert "<Say" in out


def test_port_option_reaches_a_host_started_with_port(served_host, clean_env, tmp_path, capsys):
    """`scripts/start.sh --port N`: --port N wins over local.settings.json."""
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    write_local_settings(tmp_path, port=9)  # nothing listens there
    args = ["sms", "--app-root", str(tmp_path), "--port", str(served_host.port)]
    assert simulate.main(args) == 0
    assert "<Message" in capsys.readouterr().out


def test_port_and_url_are_exclusive(clean_env, capsys):
    with pytest.raises(SystemExit) as exit_:
        simulate.main(["voice", "--port", "7072", "--url", URL])
    assert exit_.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


# -- the command -------------------------------------------------------------------------------


def test_what_reaches_the_app_over_http(served_fixture_app, clean_env, capsys):
    """The echo function shows the request as the host built it from the simulator's."""
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    url = f"{served_fixture_app.url}/api/echo"
    code = simulate.main(["voice", "--url", url, "--from", "+14155550111", "--param", "Digits=5"])
    out = capsys.readouterr().out
    assert code == 0
    seen = json.loads(out.split("\n", 2)[2])
    assert seen["headers"]["user-agent"] == "TwilioProxy/1.1"
    assert seen["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert seen["form"]["Digits"] == "5"
    assert seen["form"]["From"] == "+14155550111"
    signature = seen["headers"]["x-twilio-signature"]
    assert RequestValidator(TOKEN).validate(seen["url"], seen["form"], signature)
    assert TOKEN not in out
    own_lines = "\n".join(out.split("\n", 2)[:2])  # the rest is the echo app's answer
    assert signature not in own_lines


def test_get_reaches_the_app_as_twilio_sends_it(served_fixture_app, clean_env, capsys):
    """What the echo function sees: a GET, Twilio's fields in the query, no body, and a
    signature over the full URL that Twilio's validator accepts."""
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    url = f"{served_fixture_app.url}/api/echo"
    assert simulate.main(["voice", "--url", url, "--method", "get", "--param", "Digits=5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"GET {url} (voice webhook, fields in the query")
    seen = json.loads(out.split("\n", 2)[2])
    assert seen["method"] == "GET"
    assert (seen["body"], seen["form"]) == ("", {})
    assert "content-type" not in seen["headers"]
    query = dict(parse_qsl(urlsplit(seen["url"]).query, keep_blank_values=True))
    assert set(query) == VOICE_FIELDS | {"Digits"}
    assert seen["params"]["Digits"] == query["Digits"] == "5"
    assert valid_get(seen["url"], seen["headers"]["x-twilio-signature"])


def test_get_webhooks_are_accepted_by_the_app(served_host, clean_env, capsys):
    """The app's own signature check takes the simulator's GET for Twilio's, on both routes."""
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    port = str(served_host.port)
    assert simulate.main(["voice", "--port", port, "--method", "GET"]) == 0
    assert "<Say" in capsys.readouterr().out
    assert simulate.main(["sms", "--port", port, "--method", "GET", "--body", "hi"]) == 0
    assert "<Message" in capsys.readouterr().out


def test_shared_key_webhooks_are_accepted_by_the_app(served_host, clean_env, capsys):
    """--shared-key signs as a Webhook Rule does: the app checks it with the SharedKey secret."""
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    clean_env.setenv("TWILIO_SHARED_KEY_SECRET", "shared-key-secret-of-the-simulator")
    port = str(served_host.port)
    assert simulate.main(["voice", "--port", port, "--shared-key"]) == 0
    out = capsys.readouterr().out
    assert "signed with TWILIO_SHARED_KEY_SECRET" in out
    assert "shared-key-secret-of-the-simulator" not in out
    assert "<Say" in out


def test_shared_key_signature_is_twilios(served_fixture_app, clean_env, capsys):
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    clean_env.setenv("TWILIO_SHARED_KEY_SECRET", "shared-key-secret-of-the-simulator")
    url = f"{served_fixture_app.url}/api/echo"
    assert simulate.main(["sms", "--url", url, "--shared-key"]) == 0
    seen = json.loads(capsys.readouterr().out.split("\n", 2)[2])
    header = seen["headers"]["x-twilio-webhooks-signature-settings"]
    assert re.fullmatch(r"key=webhooks_sharedkey_[0-9a-f]{26},algorithm=HMAC_SHA256", header)
    assert RequestValidator("shared-key-secret-of-the-simulator").validate(
        seen["url"], seen["form"], seen["headers"]["x-twilio-signature"], "HMAC_SHA256")
    assert not RequestValidator(TOKEN).validate(
        seen["url"], seen["form"], seen["headers"]["x-twilio-signature"])


def test_a_refused_signature_points_to_the_apps_log(served_host, clean_env, capsys):
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    code = simulate.main(["voice", "--port", str(served_host.port),
                          "--sign-url", "https://elsewhere.example.com/api/voice_url"])
    captured = capsys.readouterr()
    assert code == 1
    assert "HTTP 403" in captured.out
    assert "outcome=refused" in captured.err and "log" in captured.err


def test_shared_key_without_its_secret_exits_2(clean_env, tmp_path, capsys):
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    code = simulate.main(["voice", "--app-root", str(tmp_path), "--shared-key"])
    assert code == 2
    assert "no TWILIO_SHARED_KEY_SECRET to sign with" in capsys.readouterr().err


def test_shared_key_signing_needs_no_auth_token(served_fixture_app, clean_env, capsys):
    clean_env.setenv("TWILIO_SHARED_KEY_SECRET", "shared-key-secret-of-the-simulator")
    assert simulate.main(["sms", "--url", f"{served_fixture_app.url}/api/echo",
                          "--shared-key"]) == 0


def test_non_2xx_exits_1_and_prints_the_status(served_fixture_app, clean_env, capsys):
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    code = simulate.main(["sms", "--url", f"{served_fixture_app.url}/api/nowhere"])
    assert code == 1
    assert "HTTP 404" in capsys.readouterr().out


def test_no_token_exits_2_and_says_where_to_put_it(clean_env, tmp_path, capsys):
    code = simulate.main(["voice", "--app-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "TWILIO_AUTH_TOKEN" in err
    assert "local.settings.json" in err


def test_token_from_local_settings_and_environment_wins(
    served_fixture_app, clean_env, tmp_path, capsys
):
    (tmp_path / "local.settings.json").write_text(json.dumps(
        {"IsEncrypted": False, "Values": {"TWILIO_AUTH_TOKEN": "from-file-token-00000000001",
                                          "TWILIO_PHONE_NUMBER": "+14155550199"}}))
    url = f"{served_fixture_app.url}/api/echo"
    assert simulate.main(["sms", "--url", url, "--app-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "auth token from local.settings.json" in out
    assert "from-file-token" not in out
    seen = json.loads(out.split("\n", 2)[2])
    assert seen["form"]["To"] == "+14155550199"
    assert RequestValidator("from-file-token-00000000001").validate(
        seen["url"], seen["form"], seen["headers"]["x-twilio-signature"])

    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    assert simulate.main(["sms", "--url", url, "--app-root", str(tmp_path)]) == 0
    assert "auth token from the environment" in capsys.readouterr().out


def test_public_base_url_is_what_gets_signed(served_fixture_app, clean_env, capsys):
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    clean_env.setenv("PUBLIC_BASE_URL", "https://abc.ngrok.app")
    url = f"{served_fixture_app.url}/api/echo?x=1"
    assert simulate.main(["voice", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "signed for https://abc.ngrok.app/api/echo?x=1" in out
    seen = json.loads(out.split("\n", 2)[2])
    assert RequestValidator(TOKEN).validate(
        "https://abc.ngrok.app/api/echo?x=1", seen["form"], seen["headers"]["x-twilio-signature"])


def test_unreachable_url_exits_2(clean_env, capsys):
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    code = simulate.main(["voice", "--url", "http://127.0.0.1:9/api/voice_url", "--timeout", "2"])
    assert code == 2
    assert "cannot reach" in capsys.readouterr().err


def test_bad_param_exits_2(clean_env, capsys):
    clean_env.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    assert simulate.main(["voice", "--param", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("kind_args", [["--shared-key"], []], ids=["shared-key", "auth-token"])
def test_an_empty_secret_in_an_existing_file_is_not_called_a_missing_file(
        clean_env, tmp_path, capsys, kind_args):
    """local.settings.json.example leaves TWILIO_SHARED_KEY_SECRET empty: the error once said
    `local.settings.json not found` about a file that was there."""
    write_local_settings(tmp_path, TWILIO_AUTH_TOKEN="", TWILIO_SHARED_KEY_SECRET="")
    code = simulate.main(["voice", "--app-root", str(tmp_path), *kind_args])
    err = capsys.readouterr().err
    assert code == 2
    assert "not found" not in err
    needed = "TWILIO_SHARED_KEY_SECRET" if kind_args else "TWILIO_AUTH_TOKEN"
    assert f"no {needed} to sign with: it is empty in {tmp_path / 'local.settings.json'}" in err


def test_a_missing_file_is_still_called_missing(clean_env, tmp_path, capsys):
    assert simulate.main(["voice", "--app-root", str(tmp_path), "--shared-key"]) == 2
    assert "local.settings.json not found" in capsys.readouterr().err
