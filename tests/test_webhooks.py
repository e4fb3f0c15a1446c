"""voice_url and sms_url through their `main`: signature check, TwiML, logs, cold imports."""

from __future__ import annotations

import ast
import asyncio
import logging
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import (
    OTHER_TOKEN,
    SMS_PARAMS,
    VOICE_PARAMS,
    http_request,
    run_app,
    signature,
    signed_form_request,
)
from hypothesis import given
from hypothesis import strategies as st

import sms_url
import voice_url
from shared import webhooks
from shared.webhooks import twiml as twiml_doc

ROOT = Path(__file__).resolve().parent.parent
VOICE = "https://myapp.azurewebsites.net/api/voice_url"
SMS = "https://myapp.azurewebsites.net/api/sms_url"


def serve(function, req):
    """Run a function's async main the way the worker does."""
    return run_app(function.main(req))


def twiml(response) -> ET.Element:
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    root = ET.fromstring(response.get_body())
    assert root.tag == "Response"
    return root


def only_child(root: ET.Element, tag: str) -> ET.Element:
    assert [child.tag for child in root] == [tag]
    return root[0]


# --- voice_url -------------------------------------------------------------------------------


def test_voice_answers_with_the_default_greeting():
    say = only_child(twiml(serve(voice_url, signed_form_request(VOICE, VOICE_PARAMS))), "Say")

    assert say.text == "Hello Monkey!"
    assert say.attrib == {}


def test_voice_greeting_voice_and_language_come_from_settings(app_settings):
    app_settings.setenv("VOICE_GREETING", "Welcome to <Acme> & co")
    app_settings.setenv("VOICE_NAME", "Polly.Joanna")
    app_settings.setenv("VOICE_LANGUAGE", "en-US")

    say = only_child(twiml(serve(voice_url, signed_form_request(VOICE, VOICE_PARAMS))), "Say")

    assert say.text == "Welcome to <Acme> & co"
    assert say.attrib == {"voice": "Polly.Joanna", "language": "en-US"}


def test_voice_speaks_the_message_make_call_put_in_the_url():
    url = VOICE + "?" + urlencode({"message": "Your order has shipped"})

    say = only_child(twiml(serve(voice_url, signed_form_request(url, VOICE_PARAMS))), "Say")

    assert say.text == "Your order has shipped"


def test_voice_answers_a_signed_get():
    url = VOICE + "?" + urlencode(VOICE_PARAMS)
    req = http_request("GET", url, {"X-Twilio-Signature": signature(url)})

    assert only_child(twiml(serve(voice_url, req)), "Say").text == "Hello Monkey!"


def test_answer_logs_one_line_with_the_call_sid_and_no_number(logs):
    serve(voice_url, signed_form_request(VOICE, VOICE_PARAMS))

    [line] = logs.lines()
    assert line == f"voice_url CallSid={VOICE_PARAMS['CallSid']} outcome=answered"
    assert VOICE_PARAMS["From"] not in logs.text()


# --- sms_url ---------------------------------------------------------------------------------


def test_sms_answers_with_the_default_reply():
    message = only_child(twiml(serve(sms_url, signed_form_request(SMS, SMS_PARAMS))), "Message")

    assert message.text == "Hey, thanks for the ping! Twilio and Azure rock!"


def test_sms_reply_comes_from_settings(app_settings):
    app_settings.setenv("SMS_REPLY", "Got it & thanks")

    message = only_child(twiml(serve(sms_url, signed_form_request(SMS, SMS_PARAMS))), "Message")

    assert message.text == "Got it & thanks"


# --- the extension point: responders ---------------------------------------------------------


def test_a_responder_may_be_async_and_reads_what_twilio_posted():
    async def echo(sms: webhooks.Webhook) -> str:
        await asyncio.sleep(0)  # stands in for an awaited async client
        return twiml_doc.message(f"You said {sms.param('Body')!r} from {sms.param('From')}")

    req = signed_form_request(SMS, SMS_PARAMS)
    response = run_app(webhooks.respond(req, "sms_url", "MessageSid", echo))

    message = only_child(twiml(response), "Message")
    assert message.text == "You said 'Hello there' from +14155550111"


def test_a_responder_reads_get_parameters_from_the_query():
    url = SMS + "?" + urlencode(SMS_PARAMS)
    req = http_request("GET", url, {"X-Twilio-Signature": signature(url)})

    response = run_app(
        webhooks.respond(
            req, "sms_url", "MessageSid", lambda sms: twiml_doc.message(sms.param("Body"))
        )
    )

    assert only_child(twiml(response), "Message").text == "Hello there"


# --- refusals --------------------------------------------------------------------------------


def unsigned(url: str, params: dict[str, str]):
    return http_request(
        "POST", url, {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(params)
    )


@pytest.mark.parametrize(
    ("function", "req"),
    [
        (voice_url, unsigned(VOICE, VOICE_PARAMS)),
        (sms_url, unsigned(SMS, SMS_PARAMS)),
        (voice_url, signed_form_request(VOICE, VOICE_PARAMS, token=OTHER_TOKEN)),
        (sms_url, signed_form_request(SMS, SMS_PARAMS, signed_url=VOICE)),
    ],
    ids=["voice-unsigned", "sms-unsigned", "voice-other-token", "sms-signed-for-voice"],
)
def test_unsigned_or_wrongly_signed_requests_are_refused(function, req, logs):
    response = serve(function, req)

    assert response.status_code == 403
    assert response.get_body() == b""
    [line] = logs.lines()
    assert "outcome=refused" in line
    assert logs.records[0].levelno == logging.WARNING


def test_no_auth_token_fails_closed(app_settings, logs):
    app_settings.delenv("TWILIO_AUTH_TOKEN")

    response = serve(voice_url, signed_form_request(VOICE, VOICE_PARAMS))

    assert response.status_code == 403
    assert any("TWILIO_AUTH_TOKEN is not set" in line for line in logs.lines(logging.ERROR))


@pytest.mark.parametrize(("name", "value"), [
    ("VOICE_LANGUAGE", "english please"),
    ("VOICE_NAME", "Polly Joanna<b>"),  # a space and markup: no voice Twilio has
])
def test_a_malformed_setting_is_named_in_an_error_log(app_settings, logs, name, value):
    app_settings.setenv(name, value)

    response = serve(voice_url, signed_form_request(VOICE, VOICE_PARAMS))

    assert response.status_code == 200  # the apology (tests/test_security.py), never a 500
    [line] = logs.lines(logging.ERROR)
    assert f"{name} is malformed" in line
    assert value not in line


# --- cold start and code rules ---------------------------------------------------------------


def test_functions_import_without_settings_and_webhooks_never_load_the_rest_client():
    """Importing every function needs no setting; serving voice_url leaves twilio.rest, aiohttp,
    phonenumbers, the storage and identity libraries and the console's code unloaded (loading
    the console's functions loads none of it either); sms_url records the text, so
    it may load the storage libraries on its first request, but never twilio.rest or
    phonenumbers."""
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        for name in [n for n in os.environ if n.startswith(("TWILIO_", "PUBLIC_", "VOICE_", "SMS_"))]:
            del os.environ[name]
        import make_call, send_sms, voice_url, sms_url, call_status, message_status, calls, messages
        import voicemails, recordings, broadcasts, optouts, console
        sys.path.insert(0, "tests")
        from conftest import signed_form_request, VOICE_PARAMS, SMS_PARAMS, AUTH_TOKEN
        os.environ["TWILIO_AUTH_TOKEN"] = AUTH_TOKEN
        base = "https://myapp.azurewebsites.net/api/"
        heavy = ("twilio.rest", "aiohttp", "phonenumbers", "azure.data.tables", "azure.identity",
                 "azure.core.pipeline", "shared.console.static", "shared.console.signin",
                 "shared.records.voicemails")
        for module, params in ((voice_url, VOICE_PARAMS), (sms_url, SMS_PARAMS)):
            req = signed_form_request(base + module.__name__, params)
            assert asyncio.run(module.main(req)).status_code == 200
            print(",".join(sorted(m for m in heavy if m in sys.modules)) or "none")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    after_voice, after_sms = result.stdout.split()
    assert after_voice == "none"
    assert not {"twilio.rest", "phonenumbers"} & set(after_sms.split(","))


def _string_literals(source: str) -> list[str]:
    """Every string constant of a module except docstrings (which may show TwiML as prose)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_twiml_is_written_as_an_xml_string_in_app_code():
    markup = re.compile(r"</?[A-Za-z][\w:.-]*(\s|/?>)")
    app_code = [
        path
        for folder in ("shared", "make_call", "voice_url", "sms_url")
        for path in (ROOT / folder).rglob("*.py")
    ]
    assert len(app_code) > 5
    for path in app_code:
        for literal in _string_literals(path.read_text()):
            assert not markup.search(literal), (
                f"{path.relative_to(ROOT)} writes markup: {literal!r}"
            )


@given(st.text(alphabet=st.characters(codec=None), max_size=40))
def test_xml_text_keeps_exactly_the_characters_xml_allows(text):
    """The XML 1.0 Char production, written out the long way: whatever xml_text keeps, an XML
    parser reads back as it was, and it drops only what the production leaves out."""
    def allowed(c: str) -> bool:
        n = ord(c)
        return n in (0x9, 0xA, 0xD) or 0x20 <= n <= 0xD7FF or 0xE000 <= n <= 0xFFFD or n >= 0x10000

    kept = twiml_doc.xml_text(text)
    assert kept == "".join(c for c in text if allowed(c))
    if "\r" not in kept:  # a parser normalises line ends
        said = ET.fromstring(twiml_doc.say(kept)).find("Say")
        assert (said.text or "") == kept
