"""Check a call-flow file as the app will (shared/callflows/flow.py): every problem on its own
line, exit 1 if there is any, 0 and a line per step if there is none. With --messages, a
message-flow file (shared/messageflows/flow.py), its numbers against send_sms's policy.

    .venv/bin/python scripts/check_flow.py flows/calls.example.json
    .venv/bin/python scripts/check_flow.py --messages flows/messages.example.json

The numbers a flow dials pass make_call's policy, read from the same settings as the app (the
environment, else local.settings.json's Values): CALL_ALLOWED_COUNTRIES (default: the country of
TWILIO_PHONE_NUMBER) and CALLER_IDS. The deploy workflow runs it on CALL_FLOW before deploying.

    .venv/bin/python scripts/check_flow.py --stamp flows/calls.example.json

also writes the flow's check stamp when it passes (`<flow>.checked`, shared/common/stamp.py),
so that the deployed app does not judge its numbers again on a new instance's first call (the
deploy's package step does this: azure.yaml). Stamped with other settings than the app gets, or
another version of the code, the stamp is ignored and the app checks the flow in full.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.callflows import flow as call_flow  # noqa: E402
from shared.callflows import settings as call_settings  # noqa: E402
from shared.callflows import walk  # noqa: E402
from shared.common import flowfile, stamp  # noqa: E402
from shared.common.flowfile import FlowProblems  # noqa: E402
from shared.common.settings import SettingsError  # noqa: E402
from shared.messageflows import flow as message_flow  # noqa: E402
from shared.messageflows import settings as message_settings  # noqa: E402


class Kind(NamedTuple):
    """What differs between checking a call flow and a message flow."""

    setting: str  # CALL_FLOW, MESSAGE_FLOW
    policy_names: tuple[str, ...]
    policy: Callable[[dict[str, str]], Any]  # the settings -> the policy its numbers pass
    inputs: Callable[[dict[str, str]], Any]  # the settings -> their raw values, for the stamp
    check: Callable[[object, Any], Any]
    describe: Callable[[Any], list[str]]


CALLS = Kind(
    "CALL_FLOW", call_settings.CALL_FLOW_SETTINGS,
    call_settings.load_call_flow_policy,
    call_settings.load_policy_inputs, call_flow.check,
    lambda flow: [f"ok ({len(flow.steps)} steps)", *walk.describe(flow.steps)],
)
MESSAGES = Kind(
    "MESSAGE_FLOW", message_settings.POLICY_SETTINGS, message_settings.load_sms_policy,
    message_settings.load_policy_inputs, message_flow.check,
    lambda flow: [f"ok ({len(flow.keywords)} keywords, reply: {'yes' if flow.reply else 'none'}"
                  f", forwarded to {len(flow.forward_to)})"],
)


def _settings_env(names: tuple[str, ...], environment_only: bool = False) -> dict[str, str]:
    env = {}
    example = ROOT / "local.settings.json"
    if example.is_file() and not environment_only:
        try:
            values = json.loads(example.read_text(encoding="utf-8")).get("Values", {})
            env = {k: v for k, v in values.items() if isinstance(v, str)}
        except (OSError, ValueError):
            pass
    env.update({name: os.environ[name] for name in names if name in os.environ})
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a call-flow (or message-flow) file as "
                                     "the app will.")
    parser.add_argument("file", help="the flow's path (relative to the app root, or absolute)")
    parser.add_argument("--messages", action="store_true",
                        help="a message flow (MESSAGE_FLOW) rather than a call flow")
    parser.add_argument("--stamp", action="store_true",
                        help="when it passes, write its check stamp beside it (for the deploy)")
    parser.add_argument("--environment-only", action="store_true",
                        help="read the settings from the environment only, as the deploy hands "
                        "them to the app, never from local.settings.json")
    args = parser.parse_args(argv)
    kind = MESSAGES if args.messages else CALLS
    env = _settings_env(kind.policy_names, args.environment_only)
    try:
        policy = kind.policy(env)
    except SettingsError as error:
        print(f"error: the policy's settings: {error.describe()}", file=sys.stderr)
        return 2
    path = Path(args.file)
    try:
        file, content, data = flowfile.read(path, kind.setting,
                                            root=Path("/") if path.is_absolute() else ROOT)
        flow = kind.check(data, policy)
    except FlowProblems as problems:
        print(f"{args.file}: refused ({len(problems.problems)} problems)", file=sys.stderr)
        for problem in problems.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    first, *rest = kind.describe(flow)
    print(f"{args.file}: {first}")
    if args.stamp:
        try:
            written = stamp.write(file, content, dict(kind.inputs(env)), ROOT)
        except OSError as error:  # the stamp's path is a folder, or a name too long
            print(f"error: cannot write {stamp.path_for(file)}: {error.strerror or error}",
                  file=sys.stderr)
            return 1
        print(f"  stamped: {written.relative_to(ROOT) if ROOT in written.parents else written}")
    for line in rest:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
