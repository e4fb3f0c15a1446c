"""The console's softphone in a real browser: headless Chromium (Debian's, driven by Playwright)
against the local host over HTTP with a function key (tests/console_stack.py), with Twilio's
Voice JavaScript SDK as scripts/build_console.py copies it from node_modules.

The browser never reaches Twilio: this machine has no route there, every HTTP request to
anywhere but 127.0.0.1 is aborted (and recorded), and the SDK's signalling WebSocket fails. So
the tests hold what can be held without Twilio: the SDK is loaded from the app itself only when
the panel opens; the panel fetches a token with the key and makes a Device with it; offline, it
says so with Twilio's code and throws nothing; what is dialled reaches the SDK's `connect` as
`To` (seen through a wrapped `Twilio.Device.prototype.connect`), and a number the policy
refuses, passed on exactly so, is refused by the TwiML App's voice URL (client_voice) when
Twilio asks it, signed; the token is renewed before its hour ends; a console without the SDK
built, or whose browser calls are not set up, says which (naming the missing settings) and
works on; an incoming call (the Device's "incoming" event, emitted here in Twilio's stead) rings
in the panel and in the header from any view, and is answered, muted, sent digits, hung up or
rejected through the SDK's Call API. The panel's picture goes to
test-artifacts/console/softphone.png.

Chromium, Playwright or the SDK in node_modules missing: the tests skip, or fail with CI=true.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import console_stack
import pytest
from conftest import ACCOUNT_SID, API_KEY, API_SECRET
from console_stack import KEY, ConsoleStack

from devhost.pytest_plugin import APP_ROOT, skip_unless_ci
from shared.browsercalls.dialing import REFUSED
from shared.console import static

# A fake microphone, granted without asking: a call needs one before it is placed.
FAKE_MICROPHONE = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
ARTIFACTS = APP_ROOT / "test-artifacts" / "console"
SDK_PATH = "/api/console/vendor/twilio-voice-sdk.js"
APP_SID = "AP" + "c" * 32
WAIT_MS = 15_000
# Where the SDK may go, as the page's Content-Security-Policy allows it (shared/console/static.py).
SIGNALLING = "wss://voice-js.roaming.twilio.com/signal"
INSIGHTS_HOSTS = {"eventgw.twilio.com", "eventgw.us1.twilio.com"}

# Before any script of the page: records CSP violations, and wraps the SDK's public methods the
# moment its bundle defines Twilio.Device (the bundle keeps a Twilio object it finds), so that
# what the page asks of the SDK is seen: every Device's token at register(), every connect()'s
# options, every updateToken().
OBSERVE_SDK = """(() => {
  window.__seen = { violations: [], registered: [], connects: [], tokens: [] };
  window.__devices = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__seen.violations.push(`${e.effectiveDirective} ${e.blockedURI}`);
  });
  let Device;
  const twilio = {};
  Object.defineProperty(twilio, "Device", {
    configurable: true, enumerable: true,
    get: () => Device,
    set(value) {
      Device = value;
      const proto = value.prototype;
      const register = proto.register, connect = proto.connect, updateToken = proto.updateToken;
      proto.register = function (...args) {
        window.__seen.registered.push(this.token);
        window.__devices.push(this);
        return register.apply(this, args);
      };
      proto.connect = function (options, ...rest) {
        window.__seen.connects.push(JSON.parse(JSON.stringify(options || {})));
        return connect.call(this, options, ...rest);
      };
      proto.updateToken = function (token, ...rest) {
        window.__seen.tokens.push(token);
        return updateToken.call(this, token, ...rest);
      };
    },
  });
  window.Twilio = twilio;
})();"""


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def sdk_built() -> None:
    """console/static/vendor/ as scripts/build_console.py makes it from node_modules."""
    built = subprocess.run([sys.executable, str(APP_ROOT / "scripts" / "build_console.py")],
                           capture_output=True, text=True, check=False, timeout=60)
    if built.returncode != 0:
        skip_unless_ci(f"the softphone's SDK could not be built: {built.stderr.strip()}",
                       "the softphone's browser tests")


@pytest.fixture(scope="module")
def browser(sdk_built) -> Iterator[Any]:
    with console_stack.chromium("the softphone's browser tests", *FAKE_MICROPHONE) as launched:
        yield launched


@pytest.fixture
def stack(start_served_host, azurite_storage, app_settings) -> Iterator[ConsoleStack]:
    """The app on 127.0.0.1 with a key, its browser calls set up (API key, TwiML App)."""
    app_settings.setenv("PUBLIC_BASE_URL", console_stack.PUBLIC)
    app_settings.setenv("TWILIO_API_KEY", API_KEY)
    app_settings.setenv("TWILIO_API_SECRET", API_SECRET)
    app_settings.setenv("TWILIO_TWIML_APP_SID", APP_SID)
    running = console_stack.start(start_served_host(host_keys=[KEY]))
    yield running
    running.close()


class Softphone:
    """One tab on the console: every request, WebSocket, error, and what was kept off the
    network (any HTTP request to anywhere but 127.0.0.1, aborted)."""

    def __init__(self, page: Any, stack: ConsoleStack) -> None:
        self.page = page
        self.stack = stack
        self.requests: list[Any] = []
        self.sockets: list[str] = []
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.uncaught: list[str] = []
        page.on("request", lambda r: self.requests.append(r))
        page.on("websocket", lambda socket: self.sockets.append(socket.url))
        page.on("console", lambda m: m.type == "error" and self.errors.append(
            f"{m.text} @ {m.location.get('url', '')}"))
        page.on("pageerror", lambda e: self.uncaught.append(str(e)))
        page.on("dialog", lambda d: (self.errors.append(f"dialog: {d.message}"), d.dismiss()))
        page.route("**/*", self._only_loopback)
        page.add_init_script(OBSERVE_SDK)

    def _only_loopback(self, route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort("addressunreachable")

    def open_phone(self) -> None:
        self.page.goto(self.stack.page_url)
        self.page.fill("#key-input", KEY)
        self.page.click("#key-submit")
        expect(self.page.locator("#view-activity")).to_have_attribute("data-state", "ready")
        assert not self.loaded_sdk(), "the SDK loaded before the softphone was opened"
        self.page.click('#nav a[href="#softphone"]')
        expect(self.page.locator("#view-softphone")).to_be_visible()

    def loaded_sdk(self) -> list[Any]:
        return [r for r in self.requests if urlsplit(r.url).path == SDK_PATH]

    def tokens(self) -> list[Any]:
        return [r for r in self.requests if r.url == f"{self.stack.url}/api/voice_token"]

    def seen(self, what: str) -> list[Any]:
        return self.page.evaluate("what => window.__seen[what]", what)

    def dial(self, typed: str) -> dict[str, Any]:
        """Type `typed` and press Call; the options the SDK's connect() received."""
        before = len(self.seen("connects"))
        self.page.fill("#softphone-to", typed)
        self.page.click("#softphone-call")
        self.page.wait_for_function("n => window.__seen.connects.length > n", arg=before)
        return self.seen("connects")[before]

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.mouse.move(0, 0)
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def unexpected_errors(self, *allowed: str) -> list[str]:
        """Console errors other than the signalling WebSocket's failure (no route to Twilio),
        the SDK's own lines about it ([TwilioVoice]), a blocked request's, and `allowed`
        (substrings): none is expected."""
        def expected(error: str) -> bool:
            text, _, where = error.rpartition(" @ ")
            return (text.startswith(("[TwilioVoice]", f"WebSocket connection to '{SIGNALLING}'"))
                    or (text.startswith("Failed to load resource: net::ERR_")
                        and urlsplit(where).hostname != "127.0.0.1")
                    or any(part in error for part in allowed))
        return [e for e in self.errors if not expected(e)]


@pytest.fixture
def phone(browser, stack) -> Iterator[Softphone]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(WAIT_MS)
    try:
        yield Softphone(context.new_page(), stack)
    finally:
        context.close()


def client_voice(stack: ConsoleStack, to: str) -> ET.Element:
    """What the TwiML App's voice URL answers when Twilio asks it, signed, for a call the
    browser placed with `To`."""
    status, body = stack.signed_answer("client_voice", {
        "CallSid": "CA" + "e" * 32, "AccountSid": ACCOUNT_SID, "ApplicationSid": APP_SID,
        "ApiVersion": "2010-04-01", "Direction": "inbound", "CallStatus": "ringing",
        "Caller": "client:console", "From": "client:console", "To": to})
    assert status == 200, body
    return ET.fromstring(body)


# --- the tests ------------------------------------------------------------------------------


def test_the_panel_loads_the_sdk_from_the_app_makes_a_device_and_dials_through_it(phone, stack):
    page = phone.page
    page.clock.install()  # runs as usual until fast-forwarded (the token's renewal, below)

    phone.open_phone()

    # Offline, clearly: no route to Twilio, and the SDK's own code for it.
    device = page.locator("#softphone-device")
    expect(device).to_have_attribute("data-device", "offline")
    expect(device).to_contain_text("Twilio cannot be reached")
    expect(device).to_contain_text("Twilio error 31005")
    expect(page.locator("#softphone-retry")).to_be_visible()
    expect(page.locator("#softphone-call-state")).to_have_attribute("data-call", "idle")

    # The SDK came from the app itself, once, under the page's own policy.
    [script] = phone.loaded_sdk()
    assert script.url == f"{stack.url}{SDK_PATH}"
    assert script.response().status == 200
    assert script.response().headers["content-security-policy"] == \
        static.CONTENT_SECURITY_POLICY
    assert "x-functions-key" not in script.headers  # a plain <script src>, no key
    # The token came with the key, and the Device was made with it and registered.
    [first] = phone.tokens()
    assert first.headers.get("x-functions-key") == KEY and first.response().status == 200
    grant = first.response().json()
    assert grant["identity"] == "console" and 0 < grant["ttl_seconds"] <= 3600
    assert phone.seen("registered") == [grant["token"]]
    # The Device reached out to the one signalling host the policy allows, and nothing else:
    # no MP3s from sdk.twilio.com (the page makes its sounds), no violation of the policy.
    assert phone.sockets and set(phone.sockets) == {SIGNALLING}
    assert {urlsplit(u).hostname for u in phone.blocked} <= INSIGHTS_HOSTS, phone.blocked
    assert phone.seen("violations") == []

    # Dialling: the number as typed, made E.164, is the call's To.
    options = phone.dial("+1 (415) 555-0123")
    assert options == {"params": {"To": "+14155550123"}}
    state = page.locator("#softphone-call-state")
    expect(state).to_have_attribute("data-call", "connecting")
    expect(state).to_contain_text("+1 415-555-0123")
    expect(page.locator("#softphone-hangup")).to_be_enabled()
    phone.shot("softphone")
    page.click("#softphone-hangup")  # never connected (offline): the attempt is dropped
    expect(state).to_have_attribute("data-call", "ended")
    expect(page.locator("#softphone-call")).to_be_enabled()

    # A premium-rate number goes to Twilio as typed; the app's voice URL refuses it aloud.
    refused = phone.dial("+1 900 555 0100")["params"]["To"]
    assert refused == "+19005550100"
    page.click("#softphone-hangup")
    answer = client_voice(stack, refused)
    assert [e.tag for e in answer] == ["Say", "Hangup"]
    assert answer[0].text == REFUSED and not list(answer.iter("Dial"))
    # ...and the number first dialled is dialled, from the app's number.
    allowed = client_voice(stack, options["params"]["To"])
    assert [(e.tag, e.text) for e in allowed.iter() if e is not allowed] == [
        ("Dial", None), ("Number", "+14155550123")]
    # Another console, by its client name; a name Twilio would not take is not even tried.
    assert phone.dial("client:front_desk") == {"params": {"To": "client:front_desk"}}
    page.click("#softphone-hangup")
    page.fill("#softphone-to", "client:front desk")
    page.click("#softphone-call")
    expect(page.locator("#softphone-call-error")).to_contain_text("letters, digits and underscore")
    assert len(phone.seen("connects")) == 3

    # The keypad types into the number between calls.
    page.fill("#softphone-to", "")
    for digit in "911":
        page.click(f'#softphone-keypad [data-digit="{digit}"]')
    expect(page.locator("#softphone-to")).to_have_value("911")

    # Other views keep working while the phone stays on.
    page.click('#nav a[href="#voicemails"]')
    expect(page.locator("#view-voicemails")).to_have_attribute("data-state", "ready")
    page.click('#nav a[href="#softphone"]')
    expect(device).to_have_attribute("data-device", "offline")
    assert len(phone.loaded_sdk()) == 1 and len(phone.tokens()) == 1

    # Phone width: nothing wider than the screen.
    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    phone.shot("softphone-375")
    page.set_viewport_size({"width": 1280, "height": 900})

    # Five minutes before the hour is up, a new token, given to the Device (not a new one).
    devices, given = len(phone.seen("registered")), len(phone.seen("tokens"))
    with page.expect_response(f"{stack.url}/api/voice_token") as renewed:
        page.clock.fast_forward((grant["ttl_seconds"] - 299) * 1000)
    new_token = renewed.value.json()["token"]
    page.wait_for_function("n => window.__seen.tokens.length > n", arg=given)
    assert phone.seen("tokens")[given:] == [new_token] and new_token != grant["token"]
    assert len(phone.seen("registered")) == devices
    expect(device).to_have_attribute("data-device", "offline")

    assert phone.uncaught == []
    assert phone.unexpected_errors() == []
    assert phone.seen("violations") == []
    assert not [r for r in phone.requests if KEY in r.url]


def test_a_console_without_the_sdk_or_the_settings_says_which_and_works_on(
    phone, stack, app_settings
):
    app_settings.delenv("TWILIO_API_KEY")
    app_settings.delenv("TWILIO_TWIML_APP_SID")
    page = phone.page
    sdk = f"{stack.url}{SDK_PATH}"
    page.route(sdk, lambda route: route.fulfill(status=404, body="Not found."))  # not built

    phone.open_phone()

    device = page.locator("#softphone-device")
    expect(device).to_have_attribute("data-device", "error")
    expect(device).to_contain_text("SDK is missing from the app")
    expect(device).to_contain_text("scripts/build_console.py")
    assert phone.tokens() == []  # no token without a phone to give it to
    page.unroute(sdk)
    page.click("#softphone-retry")

    expect(device).to_have_attribute("data-device", "not-set-up")
    expect(device).to_contain_text("TWILIO_API_KEY, TWILIO_TWIML_APP_SID")
    assert page.locator(".missing-settings code").all_inner_texts() == [
        "TWILIO_API_KEY", "TWILIO_TWIML_APP_SID"]
    [token] = phone.tokens()
    assert token.response().status == 500
    assert phone.seen("registered") == [] and phone.sockets == []  # no Device was made

    page.fill("#softphone-to", "+14155550123")
    page.click("#softphone-call")
    expect(page.locator("#softphone-call-error")).to_contain_text("not set up")
    assert phone.seen("connects") == []
    phone.shot("softphone-not-set-up")

    # Set up meanwhile: "Connect again" brings the phone up without reloading the page.
    app_settings.setenv("TWILIO_API_KEY", API_KEY)
    app_settings.setenv("TWILIO_TWIML_APP_SID", APP_SID)
    page.click("#softphone-retry")
    expect(device).to_have_attribute("data-device", "offline")
    assert len(phone.seen("registered")) == 1

    # The rest of the console works on.
    page.click('#nav a[href="#act"]')
    expect(page.locator("#view-act")).to_have_attribute("data-state", "ready")
    assert phone.uncaught == []
    assert phone.unexpected_errors(f"500 (Internal Server Error) @ {stack.url}/api/voice_token",
                                   f"404 (Not Found) @ {sdk}") == []
    assert phone.seen("violations") == []


# Stands in for Twilio's signalling announcing a call to this browser: the Device emits
# "incoming" with a Call, as the SDK does. The Call is a stand-in with the SDK's Call API (an
# EventEmitter, as the SDK's own) that records what the page asks of it.
RING = """({ from }) => {
  const Emitter = Object.getPrototypeOf(Twilio.Device.prototype).constructor;
  const call = new Emitter();
  const seen = window.__seen.call = { accepted: 0, rejected: 0, disconnected: 0, digits: [],
                                      muted: false };
  let status = "pending";
  Object.assign(call, {
    direction: "INCOMING",
    parameters: { CallSid: "CA" + "f".repeat(32), From: from, To: "client:console" },
    customParameters: new Map(),
    status: () => status,
    accept() { seen.accepted += 1; status = "open"; call.emit("accept", call); },
    reject() { seen.rejected += 1; status = "closed"; call.emit("reject"); },
    ignore() { status = "closed"; },
    disconnect() { seen.disconnected += 1; status = "closed"; call.emit("disconnect", call); },
    isMuted: () => seen.muted,
    mute(value = true) { seen.muted = value; call.emit("mute", value, call); },
    sendDigits(digits) { seen.digits.push(digits); },
  });
  window.__ringing = call;
  window.__devices[window.__devices.length - 1].emit("incoming", call);
}"""


def test_an_incoming_call_rings_in_the_panel_and_the_header_and_is_answered_or_rejected(
    phone, stack
):
    page = phone.page
    phone.open_phone()
    expect(page.locator("#softphone-device")).to_have_attribute("data-device", "offline")
    page.click('#nav a[href="#activity"]')  # the phone rings from whichever view shows
    alert = page.locator("#softphone-alert")
    state = page.locator("#softphone-call-state")

    page.evaluate(RING, {"from": "+14155550199"})

    expect(alert).to_be_visible()
    expect(alert).to_have_text("Incoming call from +1 415-555-0199: answer in Phone")
    alert.click()
    expect(page.locator("#view-softphone")).to_be_visible()
    expect(alert).to_be_hidden()
    expect(state).to_have_attribute("data-call", "incoming")
    expect(page.locator("#softphone-incoming-from")).to_have_text(
        "Incoming call from +1 415-555-0199.")
    phone.shot("softphone-incoming")
    page.click("#softphone-answer")
    expect(state).to_have_attribute("data-call", "open")
    expect(state).to_contain_text("On a call with +1 415-555-0199")
    page.click("#softphone-mute")
    expect(page.locator("#softphone-mute")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#softphone-mute")).to_have_text("Unmute")
    for digit in "1#":
        page.click(f'#softphone-keypad [data-digit="{digit}"]')
    expect(page.locator("#softphone-digits")).to_have_text("Sent: 1 #")
    expect(page.locator("#softphone-to")).to_have_value("")  # sent, not typed
    page.click('#nav a[href="#voicemails"]')
    expect(alert).to_have_text("On a call: Phone")
    alert.click()
    page.click("#softphone-hangup")
    expect(state).to_have_attribute("data-call", "ended")
    assert page.evaluate("() => window.__seen.call") == {
        "accepted": 1, "rejected": 0, "disconnected": 1, "digits": ["1", "#"], "muted": True}
    expect(page.locator("#softphone-mute")).to_have_attribute("aria-pressed", "false")

    # Rejected; then one whose caller hangs up before it is answered.
    page.evaluate(RING, {"from": "client:front_desk"})
    expect(page.locator("#softphone-incoming-from")).to_have_text(
        "Incoming call from client:front_desk.")
    page.click("#softphone-reject")
    expect(state).to_contain_text("Call from client:front_desk rejected.")
    assert page.evaluate("() => window.__seen.call.rejected") == 1
    page.evaluate(RING, {"from": "+14155550198"})
    expect(state).to_have_attribute("data-call", "incoming")
    page.evaluate("() => window.__ringing.emit('cancel')")
    expect(state).to_have_text("Missed call from +1 415-555-0198: the caller hung up.")
    expect(page.locator("#softphone-incoming")).to_be_hidden()

    assert phone.uncaught == []
    assert phone.unexpected_errors() == []
    assert phone.seen("violations") == []
