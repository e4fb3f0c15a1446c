"""Reading the call-flow file CALL_FLOW names: once per process (per path and policy settings),
never per request. A flow that cannot be read or has any problem is refused whole and logged once
at ERROR with every problem; the webhooks then answer with an apology and hang up.

A flow whose check stamp matches (shared.common.stamp: written by the deploy's check) is built
without judging its numbers again, which spares a new instance's first call the number library;
any other flow is checked in full (shared.common.flowfile).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from shared.callflows.flow import Flow, FlowProblems, Policy, check
from shared.callflows.settings import PolicyInputs, load_call_flow_policy, load_policy_inputs
from shared.common import flowfile
from shared.common.settings import SettingsError

# Where a flow file is looked for (tests point it elsewhere).
APP_ROOT = flowfile.APP_ROOT
# What a stamp must name among its code: the check and the number policy it judged with.
JUDGES = ("shared/callflows/flow.py", "shared/outbound/numbers.py")


def read(path: str | Path, policy: Policy, root: Path | None = None) -> Flow:
    """The flow in the file at `path`, checked in full against `policy`; raises FlowProblems."""
    return check(flowfile.read(path, "CALL_FLOW", root or APP_ROOT)[2], policy)


def flow(path: str, inputs: PolicyInputs | None = None) -> Flow | FlowProblems:
    """The checked flow at `path` under the policy settings `inputs` (the current ones when
    None: load_policy_inputs), or its problems (logged once per process and settings)."""
    return _flow(path, load_policy_inputs() if inputs is None else inputs)


@lru_cache(maxsize=4)
def _flow(path: str, inputs: PolicyInputs) -> Flow | FlowProblems:
    return flowfile.checked(
        path, "CALL_FLOW", dict(inputs),
        full=lambda data: check(data, _policy()),
        vouched=lambda data: check(data, None),  # its numbers were judged by the deploy's check
        judges=JUDGES,
        root=APP_ROOT,
    )


def forget() -> None:
    """Forget the flows read, so the next request reads its file again (for tests and tools that
    change a flow under a running process; on Azure a new deployment restarts the process)."""
    _flow.cache_clear()


def _policy() -> Policy:
    try:
        return load_call_flow_policy()
    except SettingsError as error:
        raise FlowProblems([f"the call policy's settings: {error.describe()}"]) from None
