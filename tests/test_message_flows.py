"""Message flows (issue 22) through the real worker: the example flow works as written through
sms_url (keywords, the reply, forwarding in the TwiML answer itself), opt-outs still come first,
a refused flow answers nothing and is logged once, and the check refuses each bad flow by name."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ACCOUNT_SID, REPO, TWILIO_NUMBER
from test_opt_outs import PERSON, text_in

from devhost.worker_host import HostResponse, WorkerHost
from shared.common.flowfile import FlowProblems
from shared.messageflows import inbound, loading
from shared.messageflows.flow import SmsPolicy, check

PUBLIC = "https://myapp.azurewebsites.net"
EXAMPLE = REPO / "flows" / "messages.example.json"
SHOP = "+14155550100"
OTHER_SENDER = "+14155550177"  # SMS_SENDERS: another of the app's numbers
POLICY = SmsPolicy(allowed_countries=frozenset({"US", "GB"}),
                   own_numbers=frozenset({TWILIO_NUMBER, OTHER_SENDER}))


@pytest.fixture(autouse=True)
def flow_settings(texting_storage, app_settings):
    app_settings.setenv("MESSAGE_FLOW", "flows/messages.example.json")
    loading.forget()
    yield
    loading.forget()


def messages(response: HostResponse) -> list[tuple[str | None, str]]:
    """Each <Message> of the answer: (its `to`, or None for the reply to the sender; its text)."""
    assert response.status == 200, response.body
    root = ET.fromstring(response.body)
    assert root.tag == "Response"
    return [(m.get("to"), m.text or "") for m in root]


def example() -> dict:
    return json.loads(EXAMPLE.read_text())


@pytest.mark.parametrize("text", ["HOURS", "hours", " Hours? "])
def test_a_keyword_gets_its_reply_and_the_text_is_forwarded(worker_host, text):
    assert messages(text_in(worker_host, text)) == [
        (None, "We are open 9-5, Monday to Friday."),
        (SHOP, f"From {PERSON}: {text}"),
    ]


def test_any_other_text_gets_the_reply_and_is_forwarded_with_its_media_as_links(worker_host):
    media = "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1"

    answer = messages(text_in(worker_host, "Do you deliver?", NumMedia="1", MediaUrl0=media))

    assert answer == [(None, "Thanks! We will text you back soon."),
                      (SHOP, f"From {PERSON}: Do you deliver?\n{media}")]


@pytest.mark.parametrize("count", ["9" * 4301, "\u00b2"])
def test_a_media_count_that_is_not_one_is_read_as_no_media(worker_host, count):
    """int() refuses more than 4,300 digits, and "²", which isdigit() takes: the signed text
    answered 500 (an attack run's). Twilio never sends either; the text is still forwarded."""
    media = "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1"

    answer = messages(text_in(worker_host, "hi", NumMedia=count, MediaUrl0=media))

    assert answer == [(None, "Thanks! We will text you back soon."), (SHOP, f"From {PERSON}: hi")]


@pytest.mark.parametrize("body", ["hi\x01there", "hi\x00there", "hi\x0bthere", "hi\ufffethere"])
def test_a_text_with_characters_xml_cannot_hold_is_forwarded_without_them(worker_host, body):
    """A phone or gateway can leave a control character in a text: quoted as it is, the answer
    was not XML, Twilio could not parse it (error 12100), and the reply and forward were lost."""
    answer = messages(text_in(worker_host, body))  # parses the answer as XML

    assert answer == [(None, "Thanks! We will text you back soon."),
                      (SHOP, f"From {PERSON}: hithere")]


def test_a_text_from_the_apps_own_numbers_is_not_forwarded_nor_sent_back_to_its_sender(
        worker_host, app_settings):
    """A forward that comes back (sent from one of the app's numbers) is not forwarded again,
    and a forward_to number texting in is not sent its own text: either would go round."""
    app_settings.setenv("SMS_SENDERS", OTHER_SENDER)

    for own in (OTHER_SENDER, TWILIO_NUMBER):
        assert messages(text_in(worker_host, "loop?", person=own, FromCountry="US",
                                ToCountry="US")) == []
    # A forward_to number is staff: no reply to it (its auto-responder answered the reply, for
    # ever: an attack run's), and its own text is not sent back to it.
    assert messages(text_in(worker_host, "hi", person=SHOP, FromCountry="US",
                            ToCountry="US")) == []


def test_two_staff_auto_responders_do_not_text_each_other_through_the_app(
    worker_host, app_settings, tmp_path, monkeypatch
):
    other = "+14155550110"
    flow = {"reply": "Thanks! We will text you back soon.", "forward_to": [SHOP, other]}
    (tmp_path / "flow.json").write_text(json.dumps(flow))
    monkeypatch.setattr(loading, "APP_ROOT", tmp_path)
    app_settings.setenv("MESSAGE_FLOW", "flow.json")
    loading.forget()

    driving = text_in(worker_host, "I'm driving. I'll see your message later.", person=SHOP,
                      FromCountry="US", ToCountry="US")
    customer = text_in(worker_host, "hi", FromCountry="US", ToCountry="US")

    assert messages(driving) == []  # not forwarded to the other, who would auto-answer it
    assert messages(customer) == [(None, "Thanks! We will text you back soon."),
                                  (SHOP, f"From {PERSON}: hi"), (other, f"From {PERSON}: hi")]


def test_opt_out_keywords_come_first_and_are_not_forwarded(worker_host, twilio_api):
    assert messages(text_in(worker_host, "STOP")) == []
    assert messages(text_in(worker_host, "HELP")) == []


def test_without_a_reply_only_the_forward_goes_out(worker_host, app_settings, tmp_path,
                                                    monkeypatch):
    flow = {"forward_to": [SHOP]}
    (tmp_path / "flow.json").write_text(json.dumps(flow))
    monkeypatch.setattr(loading, "APP_ROOT", tmp_path)
    app_settings.setenv("MESSAGE_FLOW", "flow.json")
    loading.forget()

    assert messages(text_in(worker_host, "hi")) == [(SHOP, f"From {PERSON}: hi")]


def test_a_forwarded_text_keeps_the_sender_and_the_links_within_one_message():
    media = ["https://example.com/" + "m" * 100]

    [forwarded] = inbound.forward_texts(PERSON, "x" * 2000, media)

    assert len(forwarded) == 1600
    assert forwarded.startswith(f"From {PERSON}: xxx") and forwarded.endswith("…\n" + media[0])


def test_links_that_do_not_fit_one_message_go_in_the_next():
    media = ["https://example.com/" + str(i) * 700 for i in range(3)]

    first, second = inbound.forward_texts(PERSON, "hello", media)

    assert len(first) <= 1600 and len(second) <= 1600
    assert first.startswith(f"From {PERSON}: hello") and first.count("\nhttps://") == 2
    assert second == f"From {PERSON}, more media:\n{media[2]}"


def test_an_mms_of_ten_photos_is_forwarded_with_every_link(worker_host):
    """Ten of Twilio's media links (162 characters each) do not fit one message beside the
    sender: an attack run's forward dropped the tenth without a word."""
    media = {f"MediaUrl{i}": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/"
             f"MM{'a' * 32}/Media/ME{i:032x}" for i in range(10)}

    sent = messages(text_in(worker_host, "photos", NumMedia="10", **media))

    forwards = [text for to, text in sent if to == SHOP]
    assert len(forwards) == 2 and all(len(text) <= 1600 for text in forwards)
    assert all(sum(url in text for text in forwards) == 1 for url in media.values())


def test_the_record_counts_only_the_forwards_that_went_out(worker_host, app_settings, tmp_path,
                                                           monkeypatch):
    """One of the two staff numbers opted out: the text is forwarded to one, and the record
    says one (an attack run's said two)."""
    staff = "+14155550133"
    (tmp_path / "flow.json").write_text(json.dumps({"forward_to": [SHOP, staff]}))
    monkeypatch.setattr(loading, "APP_ROOT", tmp_path)
    app_settings.setenv("MESSAGE_FLOW", "flow.json")
    loading.forget()
    text_in(worker_host, "STOP", person=staff)
    sid = "SM" + uuid.uuid4().hex

    sent = messages(text_in(worker_host, "hi", MessageSid=sid))

    assert sent == [(SHOP, f"From {PERSON}: hi")]
    record = worker_host.request("GET", f"/api/messages/{sid}", base_url=PUBLIC).json()
    assert record["forwarded_to"] == 1


def test_the_record_says_the_keyword_and_how_many_it_was_forwarded_to(worker_host):
    sid = "SM" + "b1" * 16

    text_in(worker_host, "Address!", MessageSid=sid)

    record = worker_host.request("GET", f"/api/messages/{sid}", base_url=PUBLIC).json()
    assert (record["keyword"], record["forwarded_to"]) == ("ADDRESS", 1)


@pytest.mark.parametrize(("change", "named"), [
    (lambda f: f["forward_to"].append("+19005550100"), "premium-rate"),
    (lambda f: f["forward_to"].append("+33612345678"), "not allowed"),
    (lambda f: f["forward_to"].append("+4402079460000"), "must be written as"),
    (lambda f: f.update({"reply": ""}), "reply: must be text"),
    (lambda f: f.update({"reply": "x" * 1601}), "reply: must be text of 1 to 1,600"),
    (lambda f: f["keywords"].update({"Stop": "Bye"}), "opt-out, opt-in or help keyword"),
    (lambda f: f["keywords"].update({"INFO": "Us"}), "opt-out, opt-in or help keyword"),
    (lambda f: f["keywords"].update({"hours.": "again"}), "same keyword as another"),
    (lambda f: f["keywords"].update({"MENU": ""}), "its reply must be text"),
    (lambda f: f.update({"forward": [SHOP]}), "unknown key 'forward'"),
    # A text forwarded to one of the app's own numbers comes back to sms_url, which forwards
    # it again: every leg billed, for ever.
    (lambda f: f["forward_to"].append(TWILIO_NUMBER), "is one of this app's own numbers"),
    (lambda f: f["forward_to"].append(OTHER_SENDER), "is one of this app's own numbers"),
    # The answer drops what XML cannot hold: this reply was an empty text (an attack run's).
    (lambda f: f.update({"reply": "\x01\x02"}), "reply: must be text"),
], ids=["premium", "country", "trunk-zero", "empty-reply", "long-reply", "stop-keyword",
        "help-keyword", "duplicate-keyword", "empty-keyword-reply", "unknown-key",
        "own-number", "other-sender", "control-characters-reply"])
def test_the_check_refuses_each_bad_flow_by_name(change, named):
    flow = example()
    change(flow)

    with pytest.raises(FlowProblems) as refused:
        check(flow, POLICY)

    assert any(named in p for p in refused.value.problems), refused.value.problems


def test_a_refused_flow_answers_nothing_and_is_logged_once(
    worker_host, app_settings, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.ERROR)
    flow = example()
    flow["forward_to"] = ["+19005550100"]
    (tmp_path / "flow.json").write_text(json.dumps(flow))
    monkeypatch.setattr(loading, "APP_ROOT", tmp_path)
    app_settings.setenv("MESSAGE_FLOW", "flow.json")
    loading.forget()

    first, second = text_in(worker_host, "HOURS"), text_in(worker_host, "hello")

    assert messages(first) == messages(second) == []
    refused = [r.getMessage() for r in caplog.records if "outcome=refused" in r.getMessage()]
    assert len(refused) == 1 and "premium-rate" in refused[0]
    assert messages(text_in(worker_host, "STOP")) == []  # opt-outs are still honoured


def test_the_check_command_lists_the_problems_and_exits_1(tmp_path: Path):
    flow = example()
    flow["reply"] = ""
    flow["forward_to"] = ["+19005550100"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(flow))

    result = subprocess.run(
        [sys.executable, "scripts/check_flow.py", "--messages", str(path)], cwd=REPO,
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "TWILIO_PHONE_NUMBER": TWILIO_NUMBER},
    )

    assert result.returncode == 1
    assert "refused (2 problems)" in result.stderr and "premium-rate" in result.stderr


def test_the_schema_takes_the_example_and_refuses_an_unknown_key():
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads((REPO / "flows" / "messages.schema.json")
                                                .read_text()))
    assert list(validator.iter_errors(example())) == []
    assert list(validator.iter_errors({**example(), "forward": []})) != []


# A new instance's first read of a stamped message flow: the number library stays unloaded.
FIRST_READ = """
import json, sys
sys.path.insert(0, sys.argv[1])
from shared.messageflows import loading
found = loading.flow(sys.argv[2])
print(json.dumps({"forward_to": list(found.forward_to), "phonenumbers": "phonenumbers" in sys.modules}))
"""


def test_a_stamped_message_flow_is_built_without_the_number_library(tmp_path):
    folder = Path(__import__("tempfile").mkdtemp(prefix=".test-flows-", dir=REPO))
    try:
        flow = folder / "messages.json"
        flow.write_text(EXAMPLE.read_text())
        env = {"PATH": "/usr/bin:/bin", "TWILIO_PHONE_NUMBER": TWILIO_NUMBER,
               "SMS_ALLOWED_COUNTRIES": ""}
        stamped = subprocess.run(
            [sys.executable, "scripts/check_flow.py", "--messages", "--stamp",
             str(flow.relative_to(REPO))], cwd=REPO, capture_output=True, text=True,
            timeout=60, env=env)
        assert stamped.returncode == 0, stamped.stderr
        read = subprocess.run([sys.executable, "-c", FIRST_READ, str(REPO),
                               str(flow.relative_to(REPO))], cwd=REPO, capture_output=True,
                              text=True, timeout=60, env=env)
        assert read.returncode == 0, read.stderr
        assert json.loads(read.stdout) == {"forward_to": [SHOP], "phonenumbers": False}
    finally:
        __import__("shutil").rmtree(folder, ignore_errors=True)


def test_without_message_flow_sms_url_replies_sms_reply(worker_host: WorkerHost, app_settings):
    app_settings.delenv("MESSAGE_FLOW")

    assert messages(text_in(worker_host, "HOURS")) == [
        (None, "Hey, thanks for the ping! Twilio and Azure rock!")]
