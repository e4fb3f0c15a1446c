"""Reading the call-flow file CALL_FLOW names: once per process (per path and policy), never per
request. A flow that cannot be read or has any problem is refused whole and logged once at
ERROR with every problem; the webhooks then answer with an apology and hang up."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from shared.callflows.flow import Flow, FlowProblems, Policy, check
from shared.common import logs

logger = logs.get_logger(__name__)

# The app root: the deployed package's top, where host.json is (shared/callflows/ is two below).
APP_ROOT = Path(__file__).resolve().parents[2]


def read(path: str | Path, policy: Policy, root: Path | None = None) -> Flow:
    """The flow in the file at `path` (relative to `root`, the app root by default); raises
    FlowProblems."""
    root = root or APP_ROOT
    file = (root / path).resolve()
    if root.resolve() not in file.parents:
        raise FlowProblems([f"CALL_FLOW: '{str(path)[:80]}' is not a file inside the app"])
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FlowProblems([f"CALL_FLOW: no file '{str(path)[:80]}' in the app"]) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise FlowProblems([f"CALL_FLOW: '{str(path)[:80]}' is not a JSON file "
                            f"({type(error).__name__})"]) from None
    return check(data, policy)


@lru_cache(maxsize=4)
def flow(path: str, policy: Policy) -> Flow | FlowProblems:
    """The checked flow, or its problems (logged once, here)."""
    try:
        return read(path, policy)
    except FlowProblems as problems:
        logger.error("call flow outcome=refused file=%s problems=%d: %s", path[:80],
                     len(problems.problems), "; ".join(problems.problems))
        return problems
