"""The console's server side through the worker host: its static files under a strict policy, the
voicemails (list, audio through the app's proxy with Range, delete at Twilio), and the key that
every data endpoint requires while the page itself loads without one.

Twilio is the local stand-in (devhost.standin) on a loopback port: the app's REST client and its
recording-media fetch are both aimed at it, as `scripts/start.sh --stand-in` does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import ACCOUNT_SID, AUTH_TOKEN, run_app, signature
from console_stack import RunningStandIn

from devhost import standin
from devhost.worker_host import HostResponse, WorkerHost
from shared.console import static
from shared.outbound import twilio_client
from shared.records import recording_media, voicemails

PUBLIC = "https://myapp.azurewebsites.net"
CALL_SID = "CA" + "c" * 32
RECORDING = "RE" + "d" * 32
CALLER = "+14155550123"


@pytest.fixture
def twilio_stand_in() -> Iterator[RunningStandIn]:
    running = RunningStandIn()
    factory = standin.install(running.url)
    yield running
    factory.close_all()
    twilio_client.use_http_client(None)
    recording_media.use_api_origin(None)
    running.close()


def get(host: WorkerHost, path: str, headers: dict[str, str] | None = None) -> HostResponse:
    return host.request("GET", path, headers=headers or {}, base_url=PUBLIC)


def callback(host: WorkerHost, route: str, params: dict[str, str]) -> HostResponse:
    url = f"{PUBLIC}/api/{route}"
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": signature(url, params, AUTH_TOKEN)}
    return host.request("POST", url, headers=headers, body=urlencode(params), base_url=PUBLIC)


def fresh(prefix: str) -> str:
    """A SID no other test used (Azurite is shared by the session)."""
    return prefix + uuid.uuid4().hex


def leave_voicemail(host: WorkerHost, recording: str = RECORDING, call: str = CALL_SID) -> None:
    """What Twilio sends for an inbound call that left a voicemail: the call's status callback,
    then the recording's (twice: a retry) and the transcription's."""
    common = {"CallSid": call, "AccountSid": ACCOUNT_SID, "From": CALLER, "To": "+14155550100"}
    assert callback(host, "call_status", {**common, "CallStatus": "completed",
                                          "Direction": "inbound", "SequenceNumber": "0"}
                    ).status == 204
    recorded = {**common, "RecordingSid": recording, "RecordingStatus": "completed",
                "RecordingDuration": "42", "RecordingStartTime": "Sun, 06 Dec 2026 15:00:00 +0000"}
    for _ in range(2):
        assert callback(host, "recording_status", recorded).status == 204
    assert callback(host, "recording_status", {
        **common, "RecordingSid": recording, "TranscriptionSid": "TR" + "e" * 32,
        "TranscriptionStatus": "completed", "TranscriptionText": "<b>Call me</b> back"}
    ).status == 204


# --- the page ------------------------------------------------------------------------------------

class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "action", "poster")]
        if tag in ("script", "style") and not found.get("src") and tag == "script":
            self.inline.append(tag)
        self.inline += [k for k, _ in attrs if k == "style" or k.startswith("on")]

    def handle_data(self, data: str) -> None:
        if self.lasttag == "style" and data.strip():
            self.inline.append("style element")


def test_the_page_and_everything_it_names_are_the_apps_own_under_a_strict_policy(worker_host):
    page = get(worker_host, "/api/console/")
    parser = _References()
    parser.feed(page.body.decode())

    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Content-Security-Policy"] == static.CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in static.CONTENT_SECURITY_POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert parser.inline == []  # the policy would refuse inline script, style and handlers
    assert parser.urls, "the page names its script and styles"
    for url in parser.urls:
        assert not re.match(r"[a-z]+:|//", url), f"{url} is not the app's own file"
        named = get(worker_host, f"/api/console/{url}")
        assert named.status == 200, url
        assert named.headers["Content-Security-Policy"] == static.CONTENT_SECURITY_POLICY


def test_no_script_of_the_page_loads_anything_from_another_origin():
    root = Path(static.STATIC_ROOT)
    scripts = list(root.rglob("*.js"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        assert not re.search(r"""(import|from)\s*\(?\s*["'](https?:)?//""", text), script
        assert not re.search(r"""fetch\(\s*["'`](https?:)?//""", text), script
        assert "innerHTML" not in text and "eval(" not in text, script


@pytest.mark.parametrize("path", [
    "/api/console/../host.json", "/api/console/%2e%2e/host.json", "/api/console/..%2fhost.json",
    "/api/console/static.py", "/api/console/nothing.js", "/api/console/.hidden.js",
    "/api/console/index.html%00.js",
    # A name the file system refuses (a part over 255 bytes): no such file, not an OSError.
    "/api/console/" + "a" * 300 + ".js", "/api/console/" + "a/" * 2100 + "b.js",
])
def test_nothing_outside_the_static_files_is_served(worker_host, path):
    response = get(worker_host, path)

    assert response.status == 404
    assert b"{" not in response.body and b"import" not in response.body


def test_the_page_redirects_to_its_folder_and_revalidates_with_its_etag(worker_host):
    bare = get(worker_host, "/api/console")
    first = get(worker_host, "/api/console/")
    again = get(worker_host, "/api/console/", {"If-None-Match": first.headers["ETag"]})

    assert bare.status == 308 and bare.headers["Location"] == "/api/console/"
    assert again.status == 304 and again.body == b""


def test_the_page_loads_without_a_key_and_every_data_endpoint_refuses_without_one(
    start_worker_host, azurite_storage
):
    host = start_worker_host(host_keys=["console-test-key"])
    paths = ["/api/calls", "/api/messages", "/api/voicemails", "/api/broadcasts",
             "/api/optouts", f"/api/recordings/{RECORDING}.mp3"]

    assert get(host, "/api/console/").status == 200
    for path in paths:
        assert get(host, path).status == 401, path
        assert get(host, path, {"x-functions-key": "wrong"}).status == 401, path
    assert get(host, "/api/voicemails", {"x-functions-key": "console-test-key"}).status == 200


# --- voicemails ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/voicemails", "/api/calls", "/api/messages",
                                  "/api/broadcasts", "/api/optouts"])
def test_a_continuation_storage_will_never_take_is_the_callers_400_on_every_list(
    worker_host, azurite_storage, path
):
    """A key longer than any storage takes in a request line (Azurite answers 431): the
    voicemails' list answered 503 "try again shortly", so a client retried for ever (an attack
    run's); every list says it is the caller's token."""
    import base64
    import json

    token = base64.urlsafe_b64encode(json.dumps(
        {"PartitionKey": "A" * 20_000, "RowKey": "B"}).encode()).decode()

    answer = get(worker_host, f"{path}?continuation={token}")

    assert answer.status == 400, answer.body
    assert "continuation" in answer.json()["error"]
    assert "Retry-After" not in answer.headers


def test_a_voicemail_is_listed_once_with_its_caller_duration_and_transcription(
    worker_host, azurite_storage, twilio_stand_in
):
    recording, call = fresh("RE"), fresh("CA")
    leave_voicemail(worker_host, recording, call)

    listed = get(worker_host, "/api/voicemails?limit=100").json()["voicemails"]
    mine = [v for v in listed if v["sid"] == recording]

    assert mine == [{
        "sid": recording, "call_sid": call, "from": CALLER, "to": "+14155550100",
        "created_at": "2026-12-06T15:00:00+00:00", "duration_seconds": 42,
        "status": "completed", "transcription": "<b>Call me</b> back",
        "transcription_status": "completed", "deleted": False,
    }]


def test_the_audio_comes_through_the_app_whole_or_by_range(
    worker_host, azurite_storage, twilio_stand_in
):
    recording = fresh("RE")
    leave_voicemail(worker_host, recording, fresh("CA"))
    audio = standin.silent_mp3()
    path = f"/api/recordings/{recording}.mp3"

    whole = get(worker_host, path)
    head = get(worker_host, path, {"Range": "bytes=0-99"})
    tail = get(worker_host, path, {"Range": "bytes=-10"})
    rest = get(worker_host, path, {"Range": f"bytes={len(audio) - 5}-"})
    beyond = get(worker_host, path, {"Range": f"bytes={len(audio)}-"})

    assert whole.status == 200 and whole.body == audio
    assert whole.headers["Content-Type"] == "audio/mpeg"
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Cache-Control"] == head.headers["Cache-Control"] == "no-store"
    assert head.status == 206 and head.body == audio[:100]
    assert head.headers["Content-Range"] == f"bytes 0-99/{len(audio)}"
    assert tail.status == 206 and tail.body == audio[-10:]
    assert rest.status == 206 and rest.body == audio[-5:]
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(audio)}"
    assert twilio_stand_in.server.ledger.media_fetches == 5
    assert "twilio" not in str(whole.headers).lower()


def test_only_a_recorded_voicemail_is_fetched(worker_host, azurite_storage, twilio_stand_in):
    unknown = get(worker_host, f"/api/recordings/{'RE' + '9' * 32}.mp3")
    malformed = get(worker_host, "/api/recordings/RE123.mp3")

    assert unknown.status == 404 and "No voicemail" in unknown.json()["error"]
    assert malformed.status == 404
    assert twilio_stand_in.server.ledger.media_fetches == 0


def test_deleting_a_voicemail_deletes_it_at_twilio_and_marks_the_record(
    worker_host, azurite_storage, twilio_stand_in
):
    recording, call_sid = fresh("RE"), fresh("CA")
    leave_voicemail(worker_host, recording, call_sid)

    deleted = worker_host.request("DELETE", f"/api/voicemails/{recording}", base_url=PUBLIC)
    again = worker_host.request("DELETE", f"/api/voicemails/{recording}", base_url=PUBLIC)
    audio = get(worker_host, f"/api/recordings/{recording}.mp3")
    listed = get(worker_host, "/api/voicemails?limit=100").json()["voicemails"]
    call = get(worker_host, f"/api/calls/{call_sid}").json()

    assert deleted.status == 200 and deleted.json()["deleted"] is True
    assert "deleted at Twilio" in deleted.json()["message"]
    assert recording in twilio_stand_in.server.deleted_recordings
    # A second DELETE (a retry) answers the same, its time unchanged (found by an attack run).
    assert again.status == 200 and "deleted before" in again.json()["message"]
    assert again.json()["deleted_at"] == deleted.json()["deleted_at"]
    assert audio.status == 410
    assert [v["deleted"] for v in listed if v["sid"] == recording] == [True]
    assert call["recordings"][0]["deleted"] is True
    assert call["recordings"][0]["transcription"] == "<b>Call me</b> back"  # kept


def test_deleting_an_unknown_or_malformed_voicemail_says_so(
    worker_host, azurite_storage, twilio_stand_in
):
    unknown = worker_host.request("DELETE", f"/api/voicemails/{'RE' + '8' * 32}", base_url=PUBLIC)
    malformed = worker_host.request("DELETE", "/api/voicemails/nope", base_url=PUBLIC)

    assert unknown.status == 404 and "No voicemail" in unknown.json()["error"]
    assert malformed.status == 400 and "not a recording SID" in malformed.json()["error"]
    assert twilio_stand_in.server.deleted_recordings == set()


def test_a_twilio_that_cannot_be_reached_leaves_the_voicemail_as_it_was(
    worker_host, azurite_storage, twilio_stand_in
):
    recording = fresh("RE")
    leave_voicemail(worker_host, recording, fresh("CA"))
    recording_media.use_api_origin("http://127.0.0.1:9")  # nothing listens there
    twilio_client.use_http_client(standin.StandInClientFactory("http://127.0.0.1:9"))

    audio = get(worker_host, f"/api/recordings/{recording}.mp3")
    deleted = worker_host.request("DELETE", f"/api/voicemails/{recording}", base_url=PUBLIC)
    listed = get(worker_host, "/api/voicemails?limit=100").json()["voicemails"]

    assert audio.status == 502 and "cannot be fetched" in audio.json()["error"]
    assert deleted.status == 502 and "nothing was changed" in deleted.json()["error"]
    assert [v["deleted"] for v in listed if v["sid"] == recording] == [False]


@pytest.mark.parametrize(("header", "status", "expected"), [
    (None, 200, slice(None)), ("bytes=2-4", 206, slice(2, 5)), ("bytes=-3", 206, slice(7, 10)),
    ("bytes=8-", 206, slice(8, 10)), ("bytes=5-100", 206, slice(5, 10)),
    ("bytes=10-", 416, None), ("bytes=4-2", 416, None), ("items=0-1", 200, slice(None)),
    ("bytes=0-1,4-5", 200, slice(None)), ("bytes=-", 200, slice(None)),
])
def test_a_range_is_served_as_rfc_9110_says(header, status, expected):
    body = bytes(range(10))

    response = voicemails.ranged(body, header)

    assert response.status_code == status
    if expected is not None:
        assert response.get_body() == body[expected]


# --- sign-in (CONSOLE_REQUIRE_SIGN_IN with App Service Authentication) --------------------------

CONSOLE_ENDPOINTS = [("GET", "/api/calls"), ("GET", f"/api/calls/{CALL_SID}"),
                     ("GET", "/api/messages"), ("GET", "/api/voicemails"),
                     ("DELETE", f"/api/voicemails/{RECORDING}"),
                     ("GET", f"/api/recordings/{RECORDING}.mp3"), ("GET", "/api/broadcasts"),
                     ("POST", "/api/broadcasts"), ("GET", "/api/optouts"),
                     ("POST", "/api/optouts/clear"), ("POST", "/api/make_call"),
                     ("POST", "/api/send_sms")]


@pytest.mark.parametrize(("method", "path"), CONSOLE_ENDPOINTS)
def test_with_sign_in_required_every_console_endpoint_wants_a_signed_in_user(
    worker_host, app_settings, twilio_api, method, path
):
    app_settings.setenv("CONSOLE_REQUIRE_SIGN_IN", "true")
    app_settings.setenv("WEBSITE_AUTH_ENABLED", "True")

    response = worker_host.request(method, path, body=b"{}", base_url=PUBLIC,
                                   headers={"Content-Type": "application/json"})

    assert response.status == 401 and "Sign in first" in response.json()["error"]
    assert twilio_api.requests == []


def test_a_signed_in_user_is_answered_and_the_page_and_webhooks_need_no_sign_in(
    worker_host, app_settings, azurite_storage
):
    app_settings.setenv("CONSOLE_REQUIRE_SIGN_IN", "true")
    app_settings.setenv("WEBSITE_AUTH_ENABLED", "True")
    signed_in = {"X-MS-CLIENT-PRINCIPAL-ID": "00000000-0000-0000-0000-000000000001"}
    params = {"CallSid": CALL_SID, "AccountSid": ACCOUNT_SID, "From": CALLER,
              "To": "+14155550100"}

    assert get(worker_host, "/api/voicemails", signed_in).status == 200
    assert get(worker_host, "/api/console/").status == 200
    assert callback(worker_host, "voice_url", params).status == 200  # signed by Twilio instead


@pytest.mark.parametrize(("platform", "value", "named"), [
    (None, "true", "App Service authentication is off"), ("True", "yes", "true or false"),
])
def test_a_sign_in_that_cannot_work_refuses_everything_and_names_the_setting(
    worker_host, app_settings, platform, value, named
):
    app_settings.setenv("CONSOLE_REQUIRE_SIGN_IN", value)
    if platform:
        app_settings.setenv("WEBSITE_AUTH_ENABLED", platform)
    else:
        app_settings.delenv("WEBSITE_AUTH_ENABLED", raising=False)

    response = get(worker_host, "/api/calls", {"X-MS-CLIENT-PRINCIPAL-ID": "someone"})

    assert response.status == 500
    assert named in response.json()["error"] and "CONSOLE_REQUIRE_SIGN_IN" in response.body.decode()


async def serve(app: Any) -> tuple[Any, int]:
    """An aiohttp app on a free loopback port: its runner (to clean up) and the port."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


def test_the_audio_follows_twilios_redirect_without_the_credentials():
    """Twilio answers a recording's URL with a redirect to a short-lived address elsewhere: the
    account's credentials go to Twilio's API only, never to the other host."""
    from aiohttp import web

    from shared.outbound.settings import RestSettings

    seen: dict[str, str | None] = {}

    async def scenario() -> bytes | None:
        async def media_host(request: web.Request) -> web.Response:
            seen["media"] = request.headers.get("Authorization")
            return web.Response(body=b"ID3-audio", content_type="audio/mpeg")

        media = web.Application()
        media.router.add_get("/signed/{name}", media_host)
        media_runner, media_port = await serve(media)

        async def api(request: web.Request) -> web.Response:
            seen["api"] = request.headers.get("Authorization")
            raise web.HTTPFound(f"http://127.0.0.1:{media_port}/signed/{RECORDING}.mp3")

        twilio = web.Application()
        twilio.router.add_get("/2010-04-01/Accounts/{account}/Recordings/{file}", api)
        api_runner, api_port = await serve(twilio)
        recording_media.use_api_origin(f"http://127.0.0.1:{api_port}")
        try:
            rest = RestSettings(ACCOUNT_SID, ACCOUNT_SID, "the-auth-token", "+14155550100", 5.0,
                                None)
            return await recording_media.fetch(rest, RECORDING)
        finally:
            recording_media.use_api_origin(None)
            await api_runner.cleanup()
            await media_runner.cleanup()

    audio = run_app(scenario())

    assert audio == b"ID3-audio"
    assert (seen["api"] or "").startswith("Basic ")
    assert seen["media"] is None


def test_a_recording_callback_retried_without_its_start_time_is_listed_once(
    worker_host, azurite_storage, twilio_stand_in
):
    recording, call = fresh("RE"), fresh("CA")
    params = {"CallSid": call, "AccountSid": ACCOUNT_SID, "RecordingSid": recording,
              "RecordingStatus": "completed", "RecordingDuration": "9"}

    for _ in range(3):
        assert callback(worker_host, "recording_status", params).status == 204
    listed = get(worker_host, "/api/voicemails?limit=100").json()["voicemails"]

    assert [v["sid"] for v in listed].count(recording) == 1


@pytest.mark.parametrize(("field", "value"), [
    # After 2286 the index key went negative: it sorted first and could not be read back, so
    # every GET /api/voicemails answered 500 for good (an attack run's).
    ("RecordingStartTime", "Fri, 31 Dec 9999 23:59:59 +0000"),
    ("RecordingStartTime", "Sat, 20 Nov 2286 17:46:41 +0000"),
    # A digit int() does not take: every read of the call answered 500 for good.
    ("RecordingDuration", "\u00b2"),
], ids=["year-9999", "after-2286", "superscript-two"])
def test_one_odd_signed_recording_callback_never_breaks_the_reads(
    worker_host, azurite_storage, twilio_stand_in, field, value
):
    recording, call = fresh("RE"), fresh("CA")
    params = {"CallSid": call, "AccountSid": ACCOUNT_SID, "RecordingSid": recording,
              "RecordingStatus": "completed", "RecordingDuration": "9",
              "RecordingStartTime": "Sun, 06 Dec 2026 15:00:00 +0000", field: value}

    assert callback(worker_host, "recording_status", params).status == 204
    listed = get(worker_host, "/api/voicemails?limit=100")
    the_call = get(worker_host, f"/api/calls/{call}")

    assert listed.status == 200, listed.body
    mine = [v for v in listed.json()["voicemails"] if v["sid"] == recording]
    assert len(mine) == 1
    assert the_call.status == 200, the_call.body
    assert get(worker_host, "/api/calls?limit=100").status == 200
    if field == "RecordingDuration":
        assert mine[0]["duration_seconds"] is None
    else:  # filed at the time it arrived, in order with the rest
        assert mine[0]["created_at"] > "2026"
        assert mine[0]["created_at"] < "2286"


@pytest.mark.parametrize(("url", "api_scheme", "followed"), [
    ("https://media.example/x.mp3", "https", True),
    ("http://media.example/x.mp3", "https", False),  # the audio in clear, or an internal host
    ("file:///etc/passwd", "https", False),
    ("http://127.0.0.1:9/x.mp3", "http", True),  # the local stand-in speaks plain http
])
def test_twilios_redirect_is_followed_to_https_only(url, api_scheme, followed):
    assert recording_media.followable(url, api_scheme) is followed


def test_a_recording_that_is_absent_or_failed_is_no_voicemail(
    worker_host, azurite_storage, twilio_stand_in
):
    recording = fresh("RE")
    params = {"CallSid": fresh("CA"), "AccountSid": ACCOUNT_SID, "RecordingSid": recording,
              "RecordingStatus": "absent", "RecordingDuration": "0"}

    assert callback(worker_host, "recording_status", params).status == 204
    listed = get(worker_host, "/api/voicemails?limit=100").json()["voicemails"]

    assert recording not in [v["sid"] for v in listed]
