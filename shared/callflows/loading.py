"""Reading the call-flow file CALL_FLOW names: once per process (per path and policy settings),
never per request. A flow that cannot be read or has any problem is refused whole and logged once
at ERROR with every problem; the webhooks then answer with an apology and hang up.

A flow whose check stamp matches (shared.common.stamp: written by the deploy's check) is built
without judging its numbers again, which spares a new instance's first call the number library;
any other flow is checked in full.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from shared.callflows.flow import Flow, FlowProblems, Policy, check
from shared.callflows.settings import PolicyInputs, load_call_flow_settings, load_policy_inputs
from shared.common import logs, stamp
from shared.common.settings import SettingsError

logger = logs.get_logger(__name__)

# The app root: the deployed package's top, where host.json is (shared/callflows/ is two below).
APP_ROOT = Path(__file__).resolve().parents[2]


def read_file(path: str | Path, root: Path | None = None) -> tuple[Path, bytes, object]:
    """The flow file at `path` (relative to `root`, the app root by default): where it is, its
    bytes and its JSON; raises FlowProblems when it is not a JSON file inside `root`."""
    root = root or APP_ROOT
    file = (root / path).resolve()
    if root.resolve() not in file.parents:
        raise FlowProblems([f"CALL_FLOW: '{str(path)[:80]}' is not a file inside the app"])
    try:
        content = file.read_bytes()
        data = json.loads(content.decode("utf-8"))
    except FileNotFoundError:
        raise FlowProblems([f"CALL_FLOW: no file '{str(path)[:80]}' in the app"]) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise FlowProblems([f"CALL_FLOW: '{str(path)[:80]}' is not a JSON file "
                            f"({type(error).__name__})"]) from None
    return file, content, data


def read(path: str | Path, policy: Policy, root: Path | None = None) -> Flow:
    """The flow in the file at `path`, checked in full against `policy`; raises FlowProblems."""
    return check(read_file(path, root)[2], policy)


def flow(path: str) -> Flow | FlowProblems:
    """The checked flow at `path` under the current policy settings, or its problems (logged
    once per process and settings)."""
    return _flow(path, load_policy_inputs())


@lru_cache(maxsize=4)
def _flow(path: str, inputs: PolicyInputs) -> Flow | FlowProblems:
    try:
        file, content, data = read_file(path)
        unstamped = stamp.mismatch(file, content, dict(inputs), APP_ROOT)
        if unstamped is None:
            found = check(data, None)  # its numbers were judged by the deploy's check
            how = "by its stamp"
        else:
            found = check(data, _policy())
            how = f"in full ({unstamped})"
    except FlowProblems as problems:
        logger.error("call flow outcome=refused file=%s problems=%d: %s", path[:80],
                     len(problems.problems), "; ".join(problems.problems))
        return problems
    logger.info("call flow outcome=checked file=%s steps=%d checked %s", path[:80],
                len(found.steps), how)
    return found


def forget() -> None:
    """Forget the flows read, so the next request reads its file again (for tests and tools that
    change a flow under a running process; on Azure a new deployment restarts the process)."""
    _flow.cache_clear()


def _policy() -> Policy:
    try:
        return load_call_flow_settings().policy
    except SettingsError as error:
        raise FlowProblems([f"the call policy's settings: {error.describe()}"]) from None
