"""The host over real HTTP on loopback, as `python -m devhost.server` serves it for curl and Twilio.

The server is started on a free port and stopped after the tests; requests go through the
standard library's HTTP client, so this is what curl, the simulator and ngrok talk to.
"""

from __future__ import annotations

import http.client
import json
import logging
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import refusing_local_host, server_command

from devhost import settings as local_settings
from devhost import simulate

FIXTURE_APP = Path(__file__).parent / "fixtures" / "devhost_app"
TOKEN = "served-host-test-auth-token-0001"


def call(
    base_url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


@pytest.fixture
def token(monkeypatch, tmp_path):
    # The simulator reads local.settings.json from the current folder: not a developer's own.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    # A local run, as under func start and the local host (python -m devhost.server), which set
    # a loopback WEBSITE_HOSTNAME: the signature covers the URL the simulator called.
    monkeypatch.setenv("WEBSITE_HOSTNAME", "localhost:7071")
    return TOKEN


# -- the real app ------------------------------------------------------------------------------


def test_an_unsigned_webhook_is_refused_with_403(served_host, token):
    status, _, body = call(served_host.url, "POST", "/api/voice_url")
    assert (status, body) == (403, b"")


def test_a_signed_voice_webhook_gets_the_greeting(served_host, token, monkeypatch):
    monkeypatch.setenv("VOICE_GREETING", "Hello from the served host")
    reply = simulate.send(simulate.build("voice", f"{served_host.url}/api/voice_url", token))
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/xml")
    assert b"<Say>Hello from the served host</Say>" in reply.body


def test_the_simulator_command_against_the_served_host(served_host, token, capsys):
    code = simulate.main(["sms", "--url", f"{served_host.url}/api/sms_url", "--body", "hi"])
    out = capsys.readouterr().out
    assert code == 0
    assert "HTTP 200 OK" in out
    assert "<Message>" in out
    assert TOKEN not in out


def test_make_call_only_answers_post(served_host):
    status, headers, body = call(served_host.url, "GET", "/api/make_call")
    assert (status, body) == (404, b"")
    assert headers["Content-Length"] == "0"


# -- host mechanics over the wire (fixture app) ------------------------------------------------


@pytest.fixture(scope="module")
def fixture_served():
    from devhost.server import serve
    from devhost.worker_host import WorkerHost

    with serve(WorkerHost.start(FIXTURE_APP, host_keys=["wire-key"]), port=0) as served:
        yield served


def test_headers_and_body_arrive_as_sent(fixture_served):
    status, _, body = call(
        fixture_served.url, "POST", "/api/echo?x=1", b"a=1&b=2",
        {"Content-Type": "application/x-www-form-urlencoded", "X-Custom": "v"},
    )
    seen = json.loads(body)
    assert status == 200
    host = urlsplit(fixture_served.url).netloc
    assert seen["url"] == f"http://{host}/api/echo?x=1"
    assert seen["headers"]["x-custom"] == "v"
    assert seen["headers"]["host"] == host
    assert seen["form"] == {"a": "1", "b": "2"}


def test_a_chunked_body_is_read(fixture_served):
    parts = urlsplit(fixture_served.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("POST", "/api/echo", body=iter([b"Body=", b"chunked"]),
                       encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    seen = json.loads(connection.getresponse().read())
    connection.close()
    assert seen["body"] == "Body=chunked"


def test_every_cookie_is_its_own_set_cookie_header(fixture_served):
    status, headers, body = call(fixture_served.url, "GET", "/api/cookies")
    assert (status, body) == (202, b"cookies set")
    assert [c.split(";")[0] for c in headers.get_all("Set-Cookie")] == [
        "session=abc123", "theme=dark%20blue"]
    assert headers["X-Custom"] == "yes"


def test_keys_over_http_and_the_key_never_reaches_the_log(fixture_served, caplog):
    caplog.set_level(logging.INFO, logger="devhost")
    assert call(fixture_served.url, "POST", "/api/keyed")[0] == 401
    assert call(fixture_served.url, "POST", "/api/keyed?code=wire-key")[0] == 200
    assert call(fixture_served.url, "POST", "/api/keyed", headers={
        "x-functions-key": "wire-key"})[0] == 200
    assert "wire-key" not in caplog.text
    assert "/api/keyed?code=***" in caplog.text


@pytest.mark.parametrize("value", [b" wire-key", b"wire-key ", b"\twire-key \t", b"  wire-key  "])
def test_whitespace_around_the_key_header_is_not_part_of_the_key(fixture_served, value):
    """As Kestrel trims a header value; a trailing space once made the right key a 401."""
    request = (b"POST /api/keyed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
               b"Connection: close\r\nx-functions-key:" + value + b"\r\n\r\n")
    parts = urlsplit(fixture_served.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200


@pytest.mark.parametrize("value", ["wire-key x", "wire-ke", "x wire-key", ""])
def test_a_key_that_differs_inside_is_still_refused(fixture_served, value):
    assert call(fixture_served.url, "POST", "/api/keyed",
                headers={"x-functions-key": value})[0] == 401


def test_head_gets_headers_without_a_body(fixture_served):
    status, _, body = call(fixture_served.url, "HEAD", "/")
    assert (status, body) == (200, b"")


# -- the command ---------------------------------------------------------------------------------


def test_the_server_command_serves_until_stopped():
    with server_command("--app-root", str(FIXTURE_APP), no_settings=False) as (
            output, base_url, _):
        assert "local.settings.json not found" in output
        assert "echo: [GET,POST] http://127.0.0.1:" in output
        assert call(base_url, "POST", "/api/echo")[0] == 200


def test_the_server_names_the_settings_the_environment_kept(tmp_path, monkeypatch):
    """A value in the shell shadows local.settings.json: the start-up line says which ones, so a
    changed file that seems to have no effect is explained (names only, never values)."""
    app = tmp_path / "app"
    shutil.copytree(FIXTURE_APP, app)
    (app / "local.settings.json").write_text(json.dumps({
        "IsEncrypted": False,
        "Values": {"FROM_FILE_SETTING": "file", "SHADOWED_SETTING": "file-value"},
    }))
    monkeypatch.setenv("SHADOWED_SETTING", "shell-value")
    with server_command("--app-root", str(app), no_settings=False) as (output, _, _process):
        assert "Loaded 1 settings from local.settings.json" in output
        assert "kept from the environment instead: SHADOWED_SETTING" in output
        assert "shell-value" not in output and "file-value" not in output


@pytest.fixture
def app_with_example_settings(tmp_path, monkeypatch):
    """The fixture app with local.settings.json copied from the example, as the README says, and
    no Twilio credentials in the environment to shadow it."""
    app = tmp_path / "app"
    shutil.copytree(FIXTURE_APP, app)
    shutil.copy(Path(__file__).parents[1] / local_settings.EXAMPLE_NAME,
                app / local_settings.FILE_NAME)
    for name in local_settings.PLACEHOLDERS:
        monkeypatch.delenv(name, raising=False)
    return app


def test_the_examples_placeholder_credentials_are_named_at_start_up(app_with_example_settings):
    """The host says at start-up that the example's credentials are still in place (names only),
    before any make_call fails on them."""
    with server_command("--app-root", str(app_with_example_settings), no_settings=False) as (
            output, _, _process):
        assert ("warning: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN still hold the placeholder "
                "of local.settings.json.example") in output
        assert "your_auth_token" not in output and "ACxxx" not in output


def test_no_placeholder_warning_with_the_stand_in_or_real_values(app_with_example_settings,
                                                                 monkeypatch):
    with server_command("--app-root", str(app_with_example_settings), "--twilio-api",
                        "http://127.0.0.1:9", no_settings=False) as (output, _, _process):
        assert "placeholder of" not in output
        assert "the stand-in gets an account SID made up for this run" in output
    assert local_settings.placeholder_warning({
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": TOKEN}) is None
    assert local_settings.placeholder_warning({
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "your_auth_token",
    }).startswith("warning: TWILIO_AUTH_TOKEN still holds the placeholder")


def test_local_settings_fill_the_environment_without_overriding(tmp_path):
    (tmp_path / "local.settings.json").write_text(json.dumps({
        "IsEncrypted": False,
        "Values": {"FROM_FILE": "file", "ALREADY_SET": "file", "THE_SAME": "python"},
        "Host": {"LocalHttpPort": 7099},
    }))
    found = local_settings.read(tmp_path)
    assert found is not None
    assert found.port == 7099
    environ = {"ALREADY_SET": "shell", "THE_SAME": "python"}
    # The same value in both (start.sh's FUNCTIONS_WORKER_RUNTIME) shadows nothing: not
    # reported as kept from the environment instead (a newcomer's run was puzzled by it).
    assert local_settings.apply(found, environ) == (["FROM_FILE", "THE_SAME"], ["ALREADY_SET"])
    assert environ == {"ALREADY_SET": "shell", "FROM_FILE": "file", "THE_SAME": "python"}


def test_missing_local_settings_says_how_to_create_it(tmp_path):
    (tmp_path / local_settings.EXAMPLE_NAME).write_text("{}")
    assert local_settings.read(tmp_path) is None
    message = local_settings.missing_message(tmp_path)
    assert "cp local.settings.json.example local.settings.json" in message


def test_the_real_app_names_its_console_at_start_up():
    """A newcomer running scripts/start.sh learns where the console page is."""
    with server_command() as (output, base_url, _process):
        pass

    assert f"Console: {base_url}/api/console/ (docs/console.md)" in output


def test_the_local_host_is_evidence_of_a_local_run_as_func_start_is(monkeypatch):
    """`python -m devhost.server` sets a loopback WEBSITE_HOSTNAME, as func start does: with
    neither it nor PUBLIC_BASE_URL from the environment, a webhook the simulator signs for the
    host's own URL is answered (the app takes a loopback Host on a request for no evidence)."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    for name in ("WEBSITE_HOSTNAME", "PUBLIC_BASE_URL", "AzureWebJobsStorage"):
        monkeypatch.delenv(name, raising=False)

    with server_command("--no-queues") as (_, url, _process):
        reply = simulate.send(simulate.build("voice", f"{url}/api/voice_url", TOKEN))

    assert reply.status == 200, reply.body
    assert b"<Say>" in reply.body


# -- the names it answers to (DNS rebinding) ---------------------------------------------------


def test_a_page_rebound_to_this_port_is_refused_and_the_names_it_serves_are_answered(
        monkeypatch):
    """A site whose name is re-pointed at 127.0.0.1 after its page loaded (DNS rebinding)
    reaches the unkeyed port same-origin: with any Host answered, it read every record and
    placed calls (two attack runs'). The command answers only the names it serves: addresses,
    localhost, PUBLIC_BASE_URL's host (what a tunnel forwards) and --allow-host names."""
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://Example.ngrok-free.app")
    with server_command("--app-root", str(FIXTURE_APP), "--allow-host", "devbox.lan",
                        "--allow-host", "Bücher.example:7071") as (_, base_url, _):
        port = urlsplit(base_url).port

        def status(host: str) -> tuple[int, str | None]:
            code, headers, _ = call(base_url, "POST", "/api/echo", headers={"Host": host})
            return code, headers.get("X-Devhost-Reason")

        refused, reason = status(f"rebind.attacker.example:{port}")
        assert refused == 400
        assert "does not answer the name 'rebind.attacker.example'" in reason
        assert status("attacker.example.localhost.evil.example")[0] == 400
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}",
                     "192.168.1.20:7071", "app.localhost", "example.ngrok-free.app",
                     "EXAMPLE.ngrok-free.app.", "devbox.lan:7071", "xn--bcher-kva.example"):
            assert status(host)[0] == 200, host


@pytest.mark.parametrize(("value", "said"), [
    ("https://abc.ngrok-free.app", "is a URL: give its host name alone"),
    ("*.lan", "is not a host name"),
    ("", "is not a host name"),
])
def test_an_allowed_host_that_could_never_match_is_refused_at_start_up(value, said):
    """A URL (what ngrok prints) or a pattern never equals a Host header's name: taken as it
    was, every request with that Host got 400 and nothing said why (an attack run's)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "devhost.server", "--no-settings", "--app-root", str(FIXTURE_APP),
         "--port", "0", "--allow-host", value],
        cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=60)

    assert result.returncode == 2
    assert said in result.stderr


def test_a_name_it_does_not_answer_is_told_what_to_do(monkeypatch):
    """The refusal said only "400" in a browser (a newcomer's run): it names the host refused,
    the names answered and how to add one, in the body as in the log's reason."""
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://abc123.ngrok-free.app")
    with server_command("--app-root", str(FIXTURE_APP)) as (_, base_url, _):
        code, headers, body = call(base_url, "GET", "/api/echo",
                                   headers={"Host": "xyz789.ngrok-free.app"})

    assert code == 400
    text = body.decode()
    assert text.startswith("the local host does not answer the name 'xyz789.ngrok-free.app'")
    assert "abc123.ngrok-free.app" in text and "--allow-host xyz789.ngrok-free.app" in text
    assert headers["X-Devhost-Reason"] == text.strip()


def test_the_simulator_says_why_the_local_host_refused_a_request(token, capsys):
    """A request the local host refused itself came back to the simulator's user as a bare
    "HTTP 400 Bad Request": the host's reason is printed with it."""
    with refusing_local_host("the local host does not answer the name 'vm'") as base:
        code = simulate.main(["voice", "--url", f"{base}/api/voice_url"])

    assert code == 1
    assert "The local host refused it: the local host does not answer the name 'vm'" in (
        capsys.readouterr().err)
