"""Reconciliation (issue 22) against the Twilio double's list endpoints and Azurite: it fills in a
text that came in but was not stored, a final status whose callback never came and a text made
outside the app, once; a second run changes nothing; the watermark only moves forward, and not
past what a run had no time for. It sends nothing."""

from __future__ import annotations

import contextlib
import datetime
import logging
from email.utils import format_datetime, parsedate_to_datetime

import pytest
from conftest import ACCOUNT_SID, TWILIO_NUMBER, run_app
from twilio_double import new_sid

import reconcile as reconcile_function
from shared.records import optouts, reconcile, store

PERSON = "+14155550166"


@pytest.fixture(autouse=True)
def fresh_watermark(texting_storage):
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables import TableServiceClient

    connection = texting_storage.connection_string
    with (TableServiceClient.from_connection_string(connection) as service,
          contextlib.suppress(ResourceNotFoundError)):
        service.delete_table(reconcile.TABLE)  # each test starts without a watermark
    return texting_storage


def listed(kind: str, minutes_ago: float = 5, **fields: object) -> dict:
    """A message or call as Twilio's list shows it, made `minutes_ago`."""
    when = format_datetime(datetime.datetime.now(datetime.UTC)
                           - datetime.timedelta(minutes=minutes_ago), usegmt=True)
    sid = new_sid("SM" if kind == "Messages" else "CA")
    return {"sid": sid, "account_sid": ACCOUNT_SID, "date_created": when,
            "date_sent" if kind == "Messages" else "start_time": when,
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/{kind}/{sid}.json",
            "api_version": "2010-04-01", **fields}


def inbound_text(body: str, **fields: object) -> dict:
    return listed("Messages", direction="inbound", to=TWILIO_NUMBER, body=body,
                  status="received", num_media="0", **{"from": PERSON}, **fields)


def run() -> list[reconcile.Tally]:
    return run_app(reconcile.run())


def record(kind: str, sid: str) -> dict | None:
    return run_app(store.read(kind, sid))


def test_a_text_that_came_in_unstored_is_filled_in_once(twilio_api):
    text = inbound_text("Is my order ready?")
    twilio_api.created.append(text)

    first, second = run(), run()

    kept = record("message", str(text["sid"]))
    assert kept is not None and kept["direction"] == "inbound"
    assert (kept["from"], kept["text"], kept["recorded_by"]) == (
        PERSON, "Is my order ready?", "reconcile")
    assert first[0].filled >= 1 and second[0].filled == 0  # a second run changes nothing
    assert twilio_api.creates == []  # it never sends anything
    # At Twilio's time, not the run's: it stays in its place in the newest-first list (an
    # attack run's: every filled record came out as the newest).
    assert datetime.datetime.fromisoformat(kept["created_at"]) == parsedate_to_datetime(
        str(text["date_created"]))


def test_a_missed_stop_is_kept_as_an_opt_out(twilio_api):
    twilio_api.created.append(inbound_text("Stop"))

    run()

    assert run_app(optouts.opted_out(TWILIO_NUMBER, PERSON))


def test_a_21610_whose_callback_never_came_is_kept_as_an_opt_out(twilio_api):
    sent = listed("Messages", direction="outbound-api", to=PERSON, body="Sale today",
                  status="failed", error_code=21610, **{"from": TWILIO_NUMBER})
    twilio_api.created.append(sent)

    run()

    assert run_app(optouts.opted_out(TWILIO_NUMBER, PERSON))


def test_a_21610_older_than_a_kept_start_changes_nothing(twilio_api):
    twilio_api.created.append(listed(
        "Messages", minutes_ago=30, direction="outbound-api", to=PERSON, body="Sale today",
        status="failed", error_code=21610, **{"from": TWILIO_NUMBER}))
    run_app(optouts.set_opted_out(TWILIO_NUMBER, PERSON, False, "keyword START"))

    run()

    assert not run_app(optouts.opted_out(TWILIO_NUMBER, PERSON))


def test_a_missed_stop_older_than_a_kept_start_changes_nothing(twilio_api):
    twilio_api.created.append(inbound_text("STOP", minutes_ago=30))
    run_app(optouts.set_opted_out(TWILIO_NUMBER, PERSON, False, "keyword START"))

    run()

    assert not run_app(optouts.opted_out(TWILIO_NUMBER, PERSON))


def test_a_final_status_whose_callback_never_came_is_filled_in(twilio_api):
    sent = listed("Messages", direction="outbound-api", to=PERSON, body="hi",
                  status="undelivered", error_code=30003, **{"from": TWILIO_NUMBER})
    run_app(store.created("message", str(sent["sid"]), PERSON, TWILIO_NUMBER, "queued",
                              "hi"))
    twilio_api.created.append(sent)

    run()
    run()

    kept = record("message", str(sent["sid"]))
    assert kept is not None and kept["status"] == "undelivered" and kept["error_code"] == "30003"
    assert [e["status"] for e in kept["events"]] == ["undelivered"]  # once


def test_calls_and_texts_made_outside_the_app_are_recorded(twilio_api):
    call = listed("Calls", direction="outbound-api", to=PERSON, status="completed",
                  duration="42", **{"from": TWILIO_NUMBER})
    twilio_api.created.append(call)

    run()

    kept = record("call", str(call["sid"]))
    assert kept is not None and kept["status"] == "completed"
    assert kept["recorded_by"] == "reconcile" and kept["direction"] == "outbound-api"


def test_a_record_a_voicemail_made_first_gets_the_numbers_twilio_lists(twilio_api):
    """A voicemail's recording callback makes the call's record, knowing only the caller; the
    call's own callbacks find it there. Reconcile adds what Twilio lists and the record lacks,
    and changes nothing it has."""
    call = listed("Calls", direction="inbound", to=TWILIO_NUMBER, status="completed",
                  duration="30", **{"from": PERSON})
    sid = str(call["sid"])
    run_app(store.ensure_record("call", sid, {"From": PERSON, "Direction": "inbound"}))
    twilio_api.created.append(call)

    run()
    run()

    kept = record("call", sid)
    assert kept is not None
    assert (kept["to"], kept["from"], kept["direction"]) == (TWILIO_NUMBER, PERSON, "inbound")
    assert kept["recorded_by"] == "callback" and kept["status"] == "completed"


def test_out_of_time_it_carries_on_next_run_and_the_watermark_only_moves_forward(
    twilio_api, monkeypatch
):
    texts = [inbound_text(f"text {i}", minutes_ago=10 - i) for i in range(5)]
    twilio_api.created.extend(texts)
    monkeypatch.setattr(reconcile, "PAGE_SIZE", 2)
    clock = iter(range(1000))
    # Each check of the clock is a second later: the run has time for three texts.
    monkeypatch.setattr(reconcile, "_clock", lambda: float(next(clock)))

    first = run_app(reconcile.run(budget=3.5))
    after_first = run_app(reconcile._read_sweep("message"))
    monkeypatch.setattr(reconcile, "_clock", lambda: 0.0)
    second = run_app(reconcile.run())
    after_second = run_app(reconcile._read_sweep("message"))

    assert not first[0].finished and after_first is not None and after_first.resume is not None
    assert second[0].finished
    assert all(record("message", str(t["sid"])) is not None for t in texts)
    assert after_second is not None and after_second.resume is None
    assert after_second.since > after_first.since  # moved forward, once the sweep was whole


def test_the_timer_function_runs_it(twilio_api):
    text = inbound_text("hello")
    twilio_api.created.append(text)

    run_app(reconcile_function.main(None))

    assert record("message", str(text["sid"])) is not None


def test_a_listing_twilio_refuses_is_one_error_line_not_a_traceback(twilio_api, caplog):
    """Twilio's page errors carry its answer's body; the timer logs why, once, and does not
    raise (a failed invocation puts the exception's text and stack in the host's log)."""
    twilio_api.fail_lists(401, 20003, "Authenticate: Invalid Username or Password " + PERSON)

    with pytest.raises(reconcile.Unlisted) as refused:
        run()
    twilio_api.fail_lists(401, 20003, "Authenticate " + PERSON)
    with caplog.at_level(logging.DEBUG):
        run_app(reconcile_function.main(None))

    assert str(refused.value) == ("Twilio refused the listing (HTTP 401, code 20003): check "
                                  "TWILIO_ACCOUNT_SID and its credentials")
    [line] = [r for r in caplog.records if "reconcile outcome=failed" in r.getMessage()]
    assert line.levelno == logging.ERROR and "HTTP 401, code 20003" in line.getMessage()
    assert PERSON not in caplog.text and "Authenticate" not in caplog.text
    assert "Traceback" not in caplog.text and all(r.exc_info is None for r in caplog.records)


def test_a_listing_that_cannot_reach_twilio_says_so(twilio_api):
    import aiohttp

    twilio_api.list_behaviours.append(lambda _req: aiohttp.ClientConnectionError("refused"))

    with pytest.raises(reconcile.Unlisted, match=r"could not be reached \(ClientConnectionError"):
        run()


def test_the_script_says_which_settings_are_missing():
    import subprocess
    import sys

    from conftest import REPO

    names = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET")
    result = subprocess.run(
        [sys.executable, "scripts/reconcile.py"], cwd=REPO, capture_output=True, text=True,
        timeout=60, env={"PATH": "/usr/bin:/bin", **dict.fromkeys(names, "")},
    )

    assert result.returncode == 2
    assert "TWILIO_ACCOUNT_SID is not set" in result.stderr
