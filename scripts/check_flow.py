"""Check a call-flow file as the app will (shared/callflows/flow.py): every problem on its own
line, exit 1 if there is any, 0 and a line per step if there is none.

    .venv/bin/python scripts/check_flow.py flows/calls.example.json

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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.callflows import loading, walk  # noqa: E402
from shared.callflows.flow import FlowProblems, check  # noqa: E402
from shared.callflows.settings import (  # noqa: E402
    CALL_FLOW_SETTINGS,
    load_call_flow_settings,
    load_policy_inputs,
)
from shared.common import stamp  # noqa: E402
from shared.common.settings import SettingsError  # noqa: E402


def _settings_env(environment_only: bool = False) -> dict[str, str]:
    env = {}
    example = ROOT / "local.settings.json"
    if example.is_file() and not environment_only:
        try:
            values = json.loads(example.read_text(encoding="utf-8")).get("Values", {})
            env = {k: v for k, v in values.items() if isinstance(v, str)}
        except (OSError, ValueError):
            pass
    env.update({name: os.environ[name] for name in CALL_FLOW_SETTINGS if name in os.environ})
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a call-flow file as the app will.")
    parser.add_argument("file", help="the flow's path (relative to the app root, or absolute)")
    parser.add_argument("--stamp", action="store_true",
                        help="when it passes, write its check stamp beside it (for the deploy)")
    parser.add_argument("--environment-only", action="store_true",
                        help="read the settings from the environment only, as the deploy hands "
                        "them to the app, never from local.settings.json")
    args = parser.parse_args(argv)
    env = _settings_env(args.environment_only)
    try:
        policy = load_call_flow_settings(env).policy
    except SettingsError as error:
        print(f"error: the call policy's settings: {error.describe()}", file=sys.stderr)
        return 2
    path = Path(args.file)
    try:
        file, content, data = loading.read_file(path.resolve() if path.is_absolute() else path,
                                                root=Path("/") if path.is_absolute() else ROOT)
        flow = check(data, policy)
    except FlowProblems as problems:
        print(f"{args.file}: refused ({len(problems.problems)} problems)", file=sys.stderr)
        for problem in problems.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok ({len(flow.steps)} steps)")
    if args.stamp:
        written = stamp.write(file, content, dict(load_policy_inputs(env)), ROOT)
        print(f"  stamped: {written.relative_to(ROOT) if ROOT in written.parents else written}")
    for line in walk.describe(flow.steps):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
