"""shared.webhooks.signature.parse_form is a faster parse_qsl; it must never read a body differently,
or a signature computed over its result would not be the one Twilio made."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.webhooks.signature import parse_form

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
