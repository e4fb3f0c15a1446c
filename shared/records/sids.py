"""The shapes of the SIDs the records are keyed by: what Twilio names a call (CA), a message
(SM for SMS, MM for MMS) and a recording (RE), each followed by 32 hex digits. A callback, a
read or a webhook checks its SID here before it reaches storage, where a key of another shape
would be refused or would name another row."""

from __future__ import annotations

import re

CALL = re.compile(r"CA[0-9a-fA-F]{32}")
MESSAGE = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")
RECORDING = re.compile(r"RE[0-9a-fA-F]{32}")

# The records' two kinds (shared.records.store), and how a 400 describes each one's SID.
BY_KIND = {"call": CALL, "message": MESSAGE}
DESCRIBED = {"call": "CA followed by 32 hex digits",
             "message": "SM or MM followed by 32 hex digits"}
