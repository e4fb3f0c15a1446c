"""The shape of a phone number in E.164: + and up to 15 ASCII digits, the first not 0.

Only the shape, without the number library (phonenumbers): what a webhook's own path can check
without loading it (docs/benchmark.md). Whether such a number exists, where and what kind it is,
is shared.outbound.numbers' to judge."""

from __future__ import annotations

import re

# ASCII digits only: `\d` also matches Arabic-Indic or Devanagari digits, which E.164 has not
# (and phonenumbers would happily normalise them into a valid number).
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
