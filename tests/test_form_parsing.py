"""shared.webhooks.signature.parse_form is a faster parse_qsl, and its validator a faster
RequestValidator.compute_signature; neither may ever differ from the original, or a signature
computed with them would not be the one Twilio made."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, RequestValidator

from shared.webhooks.signature import FormParams, _validator, parse_form

# Text built from the characters that matter to form encoding, plus anything else.
form_text = st.text(
    st.one_of(st.sampled_from("&=+%;"), st.sampled_from("0123456789abcdefABCDEF"), st.characters()),
    max_size=80,
)


def reference(text: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, errors="strict"):
        grouped.setdefault(name, []).append(value)
    return grouped


@given(form_text)
def test_parse_form_reads_every_body_as_parse_qsl_does(text):
    try:
        expected = reference(text)
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            parse_form(text)
        return
    assert parse_form(text) == expected


@given(st.binary(max_size=80))
def test_invalid_utf8_bodies_are_refused_like_parse_qsl(data):
    try:
        expected = reference(data.decode("utf-8"))
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            parse_form(data)
        return
    assert parse_form(data) == expected


def test_a_twilio_body_with_escapes_repeats_and_blanks():
    body = b"Body=Caf%C3%A9+%E2%98%95&To=%2B14155550100&CallToken=&MediaUrl0=a&MediaUrl0=b&flag"
    assert parse_form(body) == {
        "Body": ["Café ☕"],
        "To": ["+14155550100"],
        "CallToken": [""],
        "MediaUrl0": ["a", "b"],
        "flag": [""],
    }


class _MultiDict(dict[str, list[str]]):
    """A form as Django hands it to the stock validator (whose get_values calls getlist)."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


@given(
    st.dictionaries(st.text(max_size=12), st.lists(st.text(max_size=12), max_size=3), max_size=8),
    st.sampled_from([None, HMAC_SHA1, HMAC_SHA256]),
)
def test_the_validator_signs_every_form_as_twilio_does(fields, algorithm):
    """Single values (the joined fast path), repeated and duplicated ones (twilio's loop)."""
    url = "https://example.azurewebsites.net/api/voice_url?code=a%3D"
    expected = RequestValidator("token").compute_signature(url, _MultiDict(fields), algorithm)
    assert _validator("token").compute_signature(url, FormParams(fields), algorithm) == expected


field_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@given(
    st.dictionaries(field_text, st.lists(field_text, max_size=3), max_size=8),
    st.sampled_from([None, HMAC_SHA1, HMAC_SHA256]),
)
def test_the_validator_signs_every_parsed_body_as_twilio_does(fields, algorithm):
    """What verify signs: the form as parse_form read it from the body. One value each (every
    webhook Twilio sends) takes the joined path, marked by parse_form; repeats, twilio's loop."""
    body = urlencode([(name, value) for name, values in fields.items() for value in values])
    parsed = parse_form(body)
    assert parsed.one_value_each is all(len(values) == 1 for values in parsed.values())
    url = "https://example.azurewebsites.net/api/voice_url?code=a%3D"
    expected = RequestValidator("token").compute_signature(url, _MultiDict(parsed), algorithm)
    assert _validator("token").compute_signature(url, parsed, algorithm) == expected


def test_a_twilio_body_is_marked_one_value_each_and_a_repeat_is_not():
    assert parse_form(b"CallSid=CA1&To=%2B14155550100&From=%2B14155550101").one_value_each
    assert not parse_form(b"MediaUrl0=a&MediaUrl0=b").one_value_each
    assert not FormParams({"To": ["+14155550100"]}).one_value_each  # not parsed: twilio's loop
