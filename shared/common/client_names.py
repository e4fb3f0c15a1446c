"""How a dial names a browser (a Twilio Client: the console's softphone): `client:<identity>`,
with the identity as Twilio takes it.

The browser calls (client_voice, the Voice token) and the call flows (a flow's `dial.to`) both
use it. It lives here so a call flow's webhooks do not load the browser calls' settings, which
they do not need: each module a webhook imports is paid on a new instance's first call
(docs/benchmark.md)."""

from __future__ import annotations

import re

CLIENT_PREFIX = "client:"
# What Twilio takes as a Voice client's identity: letters, digits and underscore, at most 121.
# The source only: `re` compiles it on the first check, since a call flow's first call loads this
# module and seldom dials a browser (docs/benchmark.md).
_IDENTITY = r"[A-Za-z0-9_]{1,121}"


def is_identity(name: str) -> bool:
    """Whether Twilio takes `name` as a Voice client's identity."""
    return re.fullmatch(_IDENTITY, name) is not None
