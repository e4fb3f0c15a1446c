"""The console page in a real browser: headless Chromium (Debian's, driven by Playwright) against
the local host over HTTP with a function key, Azurite and the local stand-in of Twilio's API,
with Twilio's callbacks simulated and signed (tests/console_stack.py).

Each test fails when the behaviour it names breaks: the page loads clean and reaches nothing
outside 127.0.0.1; a wrong key is refused in the page's words; a call placed through the page
shows its status events; a voicemail plays through the app's proxy; a broadcast's bar reaches
done; an opted-out number is refused with the app's message; a text's HTML shows as text; a
forged caller or error code is shown for what it is, and never widens the page; a double click
or a lost answer sends one text. Screenshots of each view go to
test-artifacts/console/ (git-ignored); the activity view at 1280x800 is README's picture
(docs/images/console.png: written when missing, or again with CONSOLE_README_SCREENSHOT=1).

Chromium missing: the tests skip, or fail with CI=true.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import console_stack
import pytest
from conftest import ACCOUNT_SID, TWILIO_NUMBER
from console_stack import KEY, ConsoleStack, fresh_number

from devhost.pytest_plugin import APP_ROOT
from shared.console import static
from shared.records import optouts

ARTIFACTS = APP_ROOT / "test-artifacts" / "console"
README_SCREENSHOT = APP_ROOT / "docs" / "images" / "console.png"
VIEWS = ("activity", "voicemails", "broadcasts", "optouts", "act")
WAIT_MS = 15_000  # the longest any step of the page may take here (a broadcast: its own)


# --- the browser, the stack, the page --------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with console_stack.chromium("the console's browser tests") as launched:
        yield launched


@pytest.fixture
def stack(start_served_host, azurite_storage, app_settings) -> Iterator[ConsoleStack]:
    """The app served on 127.0.0.1 with a key, its queues running (broadcasts), on Azurite,
    sending to the stand-in."""
    app_settings.setenv("PUBLIC_BASE_URL", console_stack.PUBLIC)
    console_stack.clear_broadcast_queue(azurite_storage.connection_string)
    served = start_served_host(host_keys=[KEY])
    served.host.start_queues()  # stopped with the host
    running = console_stack.start(served)
    yield running
    running.close()


class Console:
    """One tab on the console, and everything it did: every request (URL, method, headers),
    console errors, uncaught exceptions, and dialogs (dismissed)."""

    def __init__(self, page: Any, stack: ConsoleStack) -> None:
        self.page = page
        self.stack = stack
        self.requests: list[Any] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("request", lambda r: self.requests.append(r))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.requests]

    def posts(self, route: str) -> list[Any]:
        return [r for r in self.requests
                if r.method == "POST" and r.url == f"{self.stack.url}/api/{route}"]

    def open(self, key: str = KEY) -> Any:
        """Load the page and give it `key`; the page's own response."""
        response = self.page.goto(self.stack.page_url)
        self.page.fill("#key-input", key)
        self.page.click("#key-submit")
        return response

    def ready(self, view: str) -> None:
        expect(self.page.locator(f"#view-{view}")).to_have_attribute("data-state", "ready")

    def view(self, name: str) -> None:
        self.page.click(f'#nav a[href="#{name}"]')
        expect(self.page.locator(f"#view-{name}")).to_be_visible()
        self.ready(name)

    def shot(self, name: str, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.mouse.move(0, 0)  # no hover highlight in the picture
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def console(browser, stack) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    context.set_default_timeout(WAIT_MS)
    try:
        yield Console(context.new_page(), stack)
    finally:
        context.close()


def readable(number: str) -> str:
    """+14155551234 as the page shows it."""
    return f"+1 {number[2:5]}-{number[5:8]}-{number[8:]}"


def place_call(stack: ConsoleStack, to: str, message: str) -> str:
    status, placed = stack.api("POST", "/api/make_call", {"to": to, "message": message})
    assert status == 201, placed
    return placed["sid"]


def send_text(stack: ConsoleStack, to: str, body: str) -> str:
    status, sent = stack.api("POST", "/api/send_sms", {"to": to, "body": body})
    assert status == 201, sent
    return sent["sid"]


# --- the tests ------------------------------------------------------------------------------


def test_the_page_loads_clean_and_nothing_leaves_127_0_0_1(console, stack):
    """Every view, with records in it, at desktop and phone width: no console error, no
    uncaught exception, no request to anywhere but the app (not even /favicon.ico), the key in
    no URL; keyboard-usable navigation; no horizontal scrolling at 375 px."""
    page = console.page
    called = fresh_number()
    call = place_call(stack, called, "Your table is ready")
    for status in ("initiated", "ringing", "in-progress", "completed"):
        assert stack.call_status(call, status, called) == 204
    texted = fresh_number()
    text = send_text(stack, texted, "Your order has shipped")
    assert stack.message_status(text, "undelivered", texted, ErrorCode="30007") == 204
    stack.inbound_text("+447700900123", "Running ten minutes late, sorry!")
    voicemail, _ = stack.voicemail(fresh_number(), 23,
                                   "Hi, it's Sam. Could you call me back about Friday?")
    status, broadcast = stack.api("POST", "/api/broadcasts", {
        "kind": "sms", "to": [fresh_number(), fresh_number()], "body": "We open at 10 today."})
    assert status == 202, broadcast

    response = console.open()

    assert response.status == 200
    assert response.headers["content-security-policy"] == static.CONTENT_SECURITY_POLICY
    console.ready("activity")
    expect(page.locator(f'#activity-list li[data-sid="{call}"] .number')).to_have_text(
        readable(called))
    expect(page.locator(f'#activity-list li[data-sid="{text}"] .error-code')).to_have_text(
        "error 30007")
    expect(page.locator("#activity-list .number", has_text="+44 770 090 0123")).to_have_count(1)
    expect(page.locator(f'#activity-list li[data-sid="{voicemail}"] .snippet')).to_have_text(
        "Voicemail (23 s): Hi, it's Sam. Could you call me back about Friday?")
    shot = console.shot("activity", full_page=False)  # 1280x800: README's picture
    if not README_SCREENSHOT.exists() or os.environ.get("CONSOLE_README_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SCREENSHOT)
    for view in VIEWS[1:]:
        console.view(view)
        console.shot(view)
    expect(page.locator(f'#broadcasts-list li[data-id="{broadcast["id"]}"]')).to_have_attribute(
        "data-state", "done", timeout=30_000)

    # The keyboard: a view is a link, reached and followed from the keyboard.
    page.focus('#nav a[href="#voicemails"]')
    page.keyboard.press("Enter")
    expect(page.locator("#view-voicemails")).to_be_visible()
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#activity"

    # Phone width: nothing wider than the screen.
    page.set_viewport_size({"width": 375, "height": 740})
    for view in VIEWS:
        console.view(view)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 375, f"{view} is {overflow} px wide at 375 px"
    console.view("activity")
    console.shot("activity-375")

    assert console.errors == []
    assert console.dialogs == []
    assert console.urls, "the page made no request at all"
    outside = [u for u in console.urls if not u.startswith(f"{stack.url}/")]
    assert outside == []
    assert not [u for u in console.urls if "favicon" in u]
    assert not [u for u in console.urls if KEY in u]
    api_calls = [r for r in console.requests if "/api/console/" not in r.url]
    assert api_calls and all(r.headers.get("x-functions-key") == KEY for r in api_calls)


def test_activity_refreshes_every_10_s_but_not_while_the_tab_is_hidden(console, stack):
    """The page's clock is Playwright's: 10 s pass in a moment. A hidden tab asks nothing; shown
    again, it refreshes at once; a refresh keeps the keyboard focus where it was."""
    page = console.page
    page.clock.install()
    console.open()
    console.ready("activity")
    to = fresh_number()
    sid = place_call(stack, to, "Your table is ready")
    row = page.locator(f'#activity-list li[data-sid="{sid}"]')
    reads = lambda: len([u for u in console.urls if u.startswith(f"{stack.url}/api/calls?")])  # noqa: E731

    page.evaluate(SET_VISIBILITY, "hidden")
    before = reads()
    page.clock.run_for(35_000)
    page.wait_for_timeout(200)

    assert reads() == before
    expect(row).to_have_count(0)

    page.evaluate(SET_VISIBILITY, "visible")
    expect(row).to_have_count(1)

    row.locator("button").focus()
    assert stack.call_status(sid, "ringing", to) == 204
    with page.expect_response(lambda r: r.url.startswith(f"{stack.url}/api/calls?")):
        page.clock.run_for(10_500)
    expect(row.locator(".badge")).to_have_text("ringing")
    assert page.evaluate("document.activeElement.closest('li')?.dataset.sid") == sid


# Makes the page believe its tab was hidden or shown again (document.visibilityState).
SET_VISIBILITY = """state => {
    Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
    document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_a_wrong_key_is_refused_in_the_pages_words_and_the_right_one_then_works(console, stack):
    page = console.page

    console.open("not-the-key")

    message = page.locator("#key-message")
    expect(message).to_be_visible()
    expect(message).to_contain_text("refused that key")
    expect(page.locator("#key-view")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0  # the refused key is not kept
    console.shot("key-refused")
    refused = [r for r in console.requests if r.headers.get("x-functions-key") == "not-the-key"]
    assert refused and all(r.response().status == 401 for r in refused)

    page.fill("#key-input", KEY)
    page.click("#key-submit")

    console.ready("activity")
    expect(message).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('console.functionsKey')") == KEY
    assert page.evaluate("localStorage.length") == 0
    assert not [u for u in console.urls if KEY in u or "not-the-key" in u]


def test_a_call_placed_from_the_page_shows_its_status_events(console, stack):
    page = console.page
    to = fresh_number()
    console.open()
    console.view("act")

    page.fill("#call-to", readable(to))  # typed as people write it: +1 415-555-…
    page.fill("#call-message", "Your table is ready")
    page.click("#call-submit")

    result = page.locator("#call-result")
    expect(result).to_have_attribute("data-kind", "ok")
    sid = result.get_attribute("data-sid")
    assert re.fullmatch(r"CA[0-9a-f]{32}", sid or "")
    [created] = stack.twilio.created("calls", to)
    assert created["sid"] == sid
    for status in ("initiated", "ringing", "in-progress", "completed"):
        assert stack.call_status(sid, status, to) == 204

    page.click("#call-result a[href='#activity']")
    row = page.locator(f'#activity-list li[data-sid="{sid}"]')
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row.locator(".number")).to_have_text(readable(to))
    row.locator("button").click()

    dialog = page.locator("#detail")
    expect(dialog).to_be_visible()
    expect(page.locator("#detail-title")).to_have_text(f"Call to {readable(to)}")
    events = page.locator("#detail-body .event")
    expect(events).to_have_count(4)
    assert [e.get_attribute("data-status") for e in events.all()] == [
        "initiated", "ringing", "in-progress", "completed"]
    expect(events.locator("time")).to_have_count(4)
    expect(page.locator("#detail-body")).to_contain_text("Your table is ready")
    console.shot("timeline", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_a_voicemail_plays_through_the_apps_proxy_and_is_deleted_at_twilio(console, stack):
    page = console.page
    caller = fresh_number()
    words = "Hi, it's Sam. <b>Call me</b> back about Friday."
    _, recording = stack.voicemail(caller, 42, words)
    console.open()
    console.view("voicemails")

    card = page.locator(f'#voicemails-list li[data-sid="{recording}"]')
    expect(card.locator(".number")).to_have_text(readable(caller))
    expect(card.locator(".duration")).to_have_text("42 s")
    expect(card.locator(".transcription")).to_have_text(words)
    card.get_by_role("button", name="Play").click()

    audio = card.locator("audio")
    page.wait_for_function("audio => audio.readyState >= 2", arg=audio.element_handle())
    assert (audio.get_attribute("src") or "").startswith("blob:")  # never a URL with the key
    media = [r for r in console.requests if r.url == f"{stack.url}/api/recordings/{recording}.mp3"]
    assert len(media) == 1 and media[0].headers.get("x-functions-key") == KEY
    assert media[0].response().status == 200
    assert stack.twilio.server.ledger.media_fetches == 1
    console.shot("voicemail-playing")

    card.get_by_role("button", name="Delete…").click()
    question = page.locator("#ask")
    expect(question).to_be_visible()
    expect(question).to_contain_text("deleted at Twilio")
    expect(question).to_contain_text("charges for storing it")
    page.click("#ask-confirm")

    expect(card).to_have_attribute("data-deleted", "true")
    expect(card.get_by_role("button", name="Play")).to_have_count(0)
    assert recording in stack.twilio.server.deleted_recordings
    assert console.errors == []
    assert all(u.startswith((f"{stack.url}/", f"blob:{stack.url}/")) for u in console.urls)


def test_a_broadcast_started_from_a_csv_file_has_its_bar_reach_done(console, stack):
    page = console.page
    numbers = [fresh_number() for _ in range(3)]
    csv = "name,phone\n" + "".join(f"Guest {i},{readable(n)}\n" for i, n in enumerate(numbers))
    console.open()
    console.view("act")

    page.set_input_files("#broadcast-file", files=[
        {"name": "guests.csv", "mimeType": "text/csv", "buffer": csv.encode()}])
    expect(page.locator("#broadcast-file-note")).to_have_text("Read 3 numbers from guests.csv.")
    expect(page.locator("#broadcast-numbers")).to_have_value("\n".join(numbers))
    page.fill("#broadcast-numbers", "\n".join([*numbers, "+19005550100"]))  # premium: refused
    page.fill("#broadcast-text", "We open at 10 tomorrow.")
    page.click("#broadcast-submit")

    result = page.locator("#broadcast-result")
    expect(result).to_have_attribute("data-kind", "ok")
    expect(result).to_contain_text("3 accepted, 1 refused")
    expect(result.locator(".refused")).to_contain_text("+1 900-555-0100")
    broadcast = result.get_attribute("data-id")
    page.click("#broadcast-result a[href='#broadcasts']")

    card = page.locator(f'#broadcasts-list li[data-id="{broadcast}"]')
    expect(card).to_have_attribute("data-state", "done", timeout=30_000)
    segments = card.locator(".bar .segment")
    assert [s.get_attribute("data-part") for s in segments.all()] == ["sent", "refused"]
    assert [s.evaluate("s => s.style.width") for s in segments.all()] == ["75%", "25%"]
    texts = [stack.twilio.created("messages", n) for n in numbers]
    assert [len(made) for made in texts] == [1, 1, 1]
    assert stack.twilio.created("messages", "+19005550100") == []

    # Twilio reports two delivered and one not: the bar tells them apart.
    for (made,), status in zip(texts, ("delivered", "delivered", "undelivered"), strict=True):
        assert stack.message_status(str(made["sid"]), status, str(made["to"]),
                                    query=f"?broadcast={broadcast}") == 204
    page.click("#broadcasts-refresh")
    expect(segments).to_have_count(3)
    assert [s.get_attribute("data-part") for s in segments.all()] == [
        "delivered", "undelivered", "refused"]
    assert [s.evaluate("s => s.style.width") for s in segments.all()] == ["50%", "25%", "25%"]
    expect(card.locator('.legend [data-part="delivered"]')).to_have_text("2 delivered")
    console.shot("broadcast-done")
    card.get_by_role("button", name="Recipients").click()
    for number, status in zip(numbers, ("delivered", "delivered", "undelivered"), strict=True):
        row = page.locator(f'#detail-body tr[data-to="{number}"]')
        expect(row.locator(".badge")).to_have_text(["sent", status])
    console.shot("broadcast-recipients", full_page=False)


def test_a_text_to_an_opted_out_number_is_refused_with_the_apps_message(console, stack):
    page = console.page
    person = fresh_number()
    stack.inbound_text(person, "STOP")
    console.open()
    console.view("act")

    page.fill("#text-to", person)
    page.fill("#text-body", "Your order is ready for collection.")
    page.click("#text-submit")

    result = page.locator("#text-result")
    expect(result).to_have_attribute("data-kind", "error")
    expect(result.locator(".app-error")).to_have_text(optouts.refusal(person))
    assert stack.twilio.created("messages", person) == []
    console.shot("text-refused")

    # Cleared from the opt-outs view, with a reason, the same text then goes: a new key, not
    # the refused one replayed.
    console.view("optouts")
    entry = page.locator(f'#optouts-list li[data-number="{person}"]')
    expect(entry).to_have_count(1)
    console.shot("optouts")
    entry.get_by_role("button", name="Clear…").click()
    page.fill("#ask-input", "Asked in the shop to get texts again")
    page.click("#ask-confirm")
    expect(page.locator("#optouts-status")).to_contain_text("Cleared")
    expect(entry).to_have_count(0)

    console.view("act")
    page.click("#text-submit")
    expect(result).to_have_attribute("data-kind", "ok")
    assert len(stack.twilio.created("messages", person)) == 1
    keys = [r.headers.get("idempotency-key") for r in console.posts("send_sms")]
    assert len(keys) == 2 and keys[0] != keys[1]


def test_activity_pages_back_through_older_records_in_order(console, stack):
    """25 texts, 20 a page: the newest 20 first, then "Older" brings the rest, each once, the
    whole list newest first (calls and texts are two paged lists merged by time)."""
    page = console.page
    sender = fresh_number()
    calls = [place_call(stack, sender, "Call back") for _ in range(2)]
    sids = [stack.inbound_text(sender, f"Message {i} of 25") for i in range(25)]
    newest_first = sids[::-1]
    console.open()
    console.ready("activity")

    def shown() -> list[str]:
        return page.eval_on_selector_all("#activity-list li[data-sid]",
                                         "rows => rows.map(r => r.dataset.sid)")

    expect(page.locator(f'#activity-list li[data-sid="{newest_first[19]}"]')).to_have_count(1)
    assert [sid for sid in shown() if sid in sids] == newest_first[:20]
    # The calls are older than the 5 texts not read yet: not shown before them.
    assert not set(calls) & set(shown())
    older = page.locator("#activity-older")
    for _ in range(10):
        if not set(sids) - set(shown()):
            break
        expect(older).to_be_visible()
        count = len(shown())
        older.click()
        expect(page.locator("#activity-list li[data-sid]")).not_to_have_count(count)
    listed = shown()
    assert [sid for sid in listed if sid in {*sids, *calls}] == [*newest_first, *calls[::-1]]
    assert len(listed) == len(set(listed))
    times = page.eval_on_selector_all("#activity-list li time",
                                      "ts => ts.map(t => Date.parse(t.dateTime))")
    assert times == sorted(times, reverse=True)


def test_a_text_whose_body_is_html_shows_as_text(console, stack):
    page = console.page
    body = "<img src=x onerror=alert(1)>"
    sid = stack.inbound_text(fresh_number(), body)
    console.open()

    row = page.locator(f'#activity-list li[data-sid="{sid}"]')
    expect(row.locator(".snippet")).to_have_text(body)
    row.locator("button").click()
    expect(page.locator("#detail-body .body-text")).to_have_text(body)
    page.wait_for_timeout(300)  # time for an injected image to fail and its handler to run

    assert page.locator("img").count() == 0
    assert console.dialogs == []
    assert not [u for u in console.urls if u.endswith("/x")]
    console.shot("html-as-text", full_page=False)


def test_a_forged_caller_is_shown_as_sent_and_never_widens_the_page(console, stack):
    """A signed callback's From need not be a number (an attack run's): one that only looks like
    a formatted number, with a right-to-left override, is shown in quotes and without the
    override; one of thousands of digits wraps instead of making the page 45,000 px wide."""
    page = console.page
    _, looks_like = stack.voicemail("\u202e+1 415-555-0100", 7, "Looks like a number.")
    _, long_one = stack.voicemail("9" * 4000, 8, "Very long.")
    console.open()
    console.view("voicemails")

    shown = page.locator(f'#voicemails-list li[data-sid="{looks_like}"] .number')
    expect(shown).to_have_text('"+1 415-555-0100"')
    expect(page.locator(f'#voicemails-list li[data-sid="{long_one}"] .number')).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")

    assert width <= 1280, width
    assert console.errors == []
    console.shot("forged-callers", full_page=False)


def test_an_error_code_that_is_not_one_is_not_shown_as_sent(console, stack):
    """A signed status callback's ErrorCode is Twilio's number; anything else is not quoted."""
    page = console.page
    sid = "SM" + secrets.token_hex(16)
    assert stack.signed("message_status", {
        "MessageSid": sid, "AccountSid": ACCOUNT_SID, "MessageStatus": "failed",
        "ErrorCode": "javascript:alert(1)", "To": fresh_number(), "From": TWILIO_NUMBER}) == 204
    console.open()

    row = page.locator(f'#activity-list li[data-sid="{sid}"]')
    expect(row.locator(".error-code")).to_have_text("error (not a code)")


def test_a_double_click_or_a_lost_answer_sends_one_text(console, stack):
    page = console.page
    first, second = fresh_number(), fresh_number()
    console.open()
    console.view("act")

    # A double click: the button is disabled at the first.
    page.fill("#text-to", first)
    page.fill("#text-body", "See you at 7.")
    page.dblclick("#text-submit")
    result = page.locator("#text-result")
    expect(result).to_have_attribute("data-kind", "ok")
    page.wait_for_timeout(300)
    assert len(stack.twilio.created("messages", first)) == 1
    [post] = console.posts("send_sms")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        post.headers.get("idempotency-key") or "")

    # A lost answer: the app sends the text, the answer never arrives; the page retries with
    # the same key and the app replays its answer instead of sending again.
    lost: list[str] = []

    def lose_the_first_answer(route: Any) -> None:
        if lost:
            route.continue_()
            return
        lost.append(route.request.headers.get("idempotency-key"))
        route.fetch()  # the request reaches the app
        route.abort("connectionreset")  # and its answer is lost on the way back

    page.route(f"{stack.url}/api/send_sms", lose_the_first_answer)
    page.fill("#text-to", second)
    page.click("#text-submit")
    expect(result).to_have_attribute("data-kind", "ok")
    retried = console.posts("send_sms")[1:]
    keys = {r.headers.get("idempotency-key") for r in retried}
    assert len(retried) == 2 and keys == {lost[0]}
    assert lost[0] != post.headers.get("idempotency-key")
    assert retried[1].response().headers.get("idempotent-replayed") == "true"
    assert len(stack.twilio.created("messages", second)) == 1
    console.shot("act-sent")

    # The first text then fails at the carrier: its timeline says why, and where to read more.
    sid = result.get_attribute("data-sid")
    [made] = stack.twilio.created("messages", second)
    assert made["sid"] == sid
    assert stack.message_status(sid, "undelivered", second, ErrorCode="30003") == 204
    console.view("activity")
    page.locator(f'#activity-list li[data-sid="{sid}"] button').click()
    note = page.locator('#detail-body .event .error-note[data-code="30003"]')
    expect(note).to_contain_text("Unreachable")
    expect(note.locator("a")).to_have_attribute(
        "href", "https://www.twilio.com/docs/api/errors/30003")
    console.shot("timeline-error", full_page=False)


# --- another website's page, in the same browser ---------------------------------------------


def test_a_page_on_another_site_cannot_text_through_the_app_without_keys(
    browser, start_served_host, texting_storage, twilio_api, app_settings
):
    """The local host's default has no keys. A page served from another origin (localhost, not
    127.0.0.1: another site to the browser) submits a hidden form to send_sms, as a page the
    developer happens to open could: Chromium marks it cross-site and the app refuses it,
    sending nothing."""
    import http.server
    import threading

    app_settings.setenv("PUBLIC_BASE_URL", console_stack.PUBLIC)
    served = start_served_host()  # no keys, as scripts/start.sh starts it
    target = f"{served.url}/api/send_sms"
    page = (f'<form method="post" action="{target}">'
            '<input name="to" value="+14155550123"><input name="body" value="Win a prize">'
            '</form><script>document.forms[0].submit()</script>').encode()

    class Prize(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Prize)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        tab = context.new_page()
        with tab.expect_response(target) as answered:
            tab.goto(f"http://localhost:{other.server_address[1]}/")
        response = answered.value
        assert response.status == 403
        assert "another website" in response.json()["error"]
        assert twilio_api.creates == []
    finally:
        context.close()
        other.shutdown()
        other.server_close()
